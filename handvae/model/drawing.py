"""Styles and characters: encode handwriting samples into latent styles, draw characters in them.

Pure torch, no Ray: the generation job, the evaluation report and the judge's assessment call these.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from handvae.errors import require
from handvae.model.vae import VAE, model_inputs, one_hot_logits
from handvae.rng import seeded_normal


@dataclass(frozen=True)
class Drawing:
    """How characters are drawn from styles. Part of a training recipe: the model file carries it,
    and generation uses it unless told otherwise."""

    sharpness: float = 1.0
    """Factor on the decoder's logits before the sigmoid. 1 (the seed) draws the Bernoulli means,
    soft and blurry; higher draws crisper strokes, closer to real ink."""
    class_shift: bool = False
    """Move each style from the class the encoder sees in its image to the class being drawn, by
    the difference of the two classes' mean latents (`VAE.class_latent_means`, from the training
    set), so that the style image's own character does not show through."""
    detail_sharpness: float = 1.0
    """`sharpness` for the detail decoder (a sample's own character, drawn by a model with a detail
    code). It reconstructs samples closely, and its Bernoulli means are their ink as scanned: the
    grey edges of MNIST's digits, the near-binary Kaggle letters. At 5 (the style decoder's), the
    default's data set scored 0.990x of real and -0.77 points of augmentation gain, at 1 0.989x and
    -0.43 (the reference classifier's seed 0; docs/results/recipes.md)."""

    def __post_init__(self):
        for name in ("sharpness", "detail_sharpness"):
            require(
                "Drawing.", name, getattr(self, name), (int, float), lambda v: 0.25 <= v <= 10, "a number in [0.25, 10]"
            )
        require("Drawing.", "class_shift", self.class_shift, bool, lambda v: True, "true or false")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_metadata(cls, metadata: dict) -> "Drawing":
        """The drawing a model file's metadata records; the seed's for files that record none."""
        return cls(**metadata.get("drawing", {}))


@torch.no_grad()
def draw_in_styles(
    model: VAE,
    images: torch.Tensor,
    style_keys: Sequence[Sequence[int]],
    labels: torch.Tensor,
    drawing: Drawing = Drawing(),
    samples_per_style: int = 1,
    randomness: float = 1.0,
    average: int = 1,
    own_class: bool = False,
) -> torch.Tensor:
    """Every class in `labels` (C,) drawn in the style of each of the uint8 `images` (N, S, S):
    uint8 (N, samples_per_style, C, S, S), white ink on black.

    Each style is drawn from its image's posterior with the spread scaled by `randomness` (0: the
    posterior mean), averaged over `average` draws. Each image's noise comes from its own key (a
    tuple of non-negative ints), so a style does not depend on the other images of its batch.

    `own_class`: `labels` is each image's own class. A model with a detail code then draws with
    its detail decoder, from z and d, so that the sample's own details carry over (at
    `drawing.detail_sharpness`); characters of other classes take z alone, the part of a style
    that transfers.

    The decoder applies a softmax to its class input. The seed's last cell feeds it a one-hot
    vector, which that softmax flattens to 0.07 against 0.03: the class barely shows, and every
    character comes out in the shape of the style's own (measured: 5% of such characters are the
    one asked for). Logits of 0 and -1e4 make the softmax give the one-hot vector itself, the class
    probabilities a confident encoder feeds the decoder in training.
    """
    if len(style_keys) != len(images):
        raise ValueError(f"{len(images)} images need as many style keys, got {len(style_keys)}")
    device = next(model.parameters()).device
    x, _ = model_inputs(images.to(device), torch.zeros(len(images), dtype=torch.long, device=device))
    z_mean, log_z_var, y_logits, detail_mean, detail_log_var = model.encode_with_detail(x)
    count, classes, latent = len(images), len(labels), z_mean.shape[1]
    draws = (samples_per_style, average, randomness)
    z = _posterior_draws(z_mean, log_z_var, style_keys, *draws)[:, :, None].expand(
        count, samples_per_style, classes, latent
    )
    labels = labels.to(device)
    if drawing.class_shift:
        means = model.class_latent_means
        z = z - means[y_logits.argmax(dim=1)][:, None, None] + means[labels][None, None]
    class_input = (
        one_hot_logits(labels, model.config.num_classes)
        .expand(count, samples_per_style, classes, -1)
        .reshape(-1, model.config.num_classes)
    )
    if own_class and detail_mean is not None:
        # Its own stream of each key: z's noise stays what it is without the detail code.
        detail = _posterior_draws(detail_mean, detail_log_var, [(*key, 1) for key in style_keys], *draws)
        detail = detail[:, :, None].expand(count, samples_per_style, classes, -1)
        logits = model.decode_detail(z.reshape(-1, latent), detail.reshape(-1, detail.shape[-1]), class_input)
        sharpness = drawing.detail_sharpness
    else:
        logits, sharpness = model.decode(z.reshape(-1, latent), class_input), drawing.sharpness
    images_out = logits.mul(sharpness).sigmoid().mul(255).round().to(torch.uint8)
    return images_out.view(count, samples_per_style, classes, *images.shape[1:]).cpu()


def _posterior_draws(
    mean: torch.Tensor,
    log_var: torch.Tensor,
    keys: Sequence[Sequence[int]],
    samples: int,
    average: int,
    randomness: float,
) -> torch.Tensor:
    """(N, samples, size): each image's draws, each the mean of `average` draws with the spread
    scaled by `randomness`, with noise from the image's key."""
    count, size = mean.shape
    noise = seeded_normal(keys, samples * average * size).to(mean.device).view(count, samples, average, size)
    return (mean[:, None, None] + randomness * torch.exp(0.5 * log_var)[:, None, None] * noise).mean(dim=2)


@torch.no_grad()
def draw_blends(
    model: VAE,
    images: torch.Tensor,
    partners: torch.Tensor,
    labels: torch.Tensor,
    shares: torch.Tensor,
    drawing: Drawing = Drawing(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, S, S), and their `class_probabilities`: character i drawn as labels[i] from the
    codes of two real samples of that class blended, a writer who is neither: the posterior means of
    z (and d) of images[i] moved shares[i, j] of the way to those of partners[i, j], decoded by the
    detail decoder (z's for a model without a detail code) at `drawing.sharpness`. Of the C candidates j (partners (N, C, S, S),
    shares (N, C)), the one the model's own classifier gives labels[i] the highest probability:
    drops blends that no longer read as their class (ghosted strokes). A function of its inputs
    alone: no noise (generation: `handvae.generate.choices.blend_draws`).

    Measured on the default model (docs/results/experiment-log.md): blends of two writers at shares
    0.3-0.7 lie as far from the training records as a new writer's characters (novelty 1.0x), where
    redraws of one sample lie at 0.4x."""
    device = next(model.parameters()).device
    count, candidates = shares.shape
    first = _posterior_means(model, images.to(device)).repeat_interleave(candidates, dim=0)
    second = _posterior_means(model, partners.flatten(0, 1).to(device))
    t = shares.reshape(-1, 1).to(device=device, dtype=first.dtype)
    codes = (1 - t) * first + t * second
    wanted = labels.to(device).long().repeat_interleave(candidates)
    class_input = one_hot_logits(wanted, model.config.num_classes)
    latent = model.config.num_latent
    logits = (
        model.decode_detail(codes[:, :latent], codes[:, latent:], class_input)
        if model.config.detail_latent
        else model.decode(codes, class_input)
    )
    drawn = logits.mul(drawing.sharpness).sigmoid().mul(255).round().to(torch.uint8).squeeze(1)
    probs = class_probabilities(model, drawn)
    chosen = probs.gather(1, wanted[:, None]).view(count, candidates).argmax(dim=1)
    pick = torch.arange(count, device=device) * candidates + chosen
    return drawn[pick].cpu(), probs[pick].cpu()


@torch.no_grad()
def class_probabilities(model: VAE, images: torch.Tensor) -> torch.Tensor:
    """(N, num_classes) float32 on the model's device: its classifier's probability of each class
    for the uint8 images (N, S, S). A generated data set's `label_probs` (teacher soft labels)."""
    device = next(model.parameters()).device
    x, _ = model_inputs(images.to(device), torch.zeros(len(images), dtype=torch.long, device=device))
    return model.encode(x)[2].softmax(dim=1).float()


def _posterior_means(model: VAE, images: torch.Tensor) -> torch.Tensor:
    """(N, latent + detail_latent): the posterior means of z and d of uint8 images (N, S, S)."""
    x, _ = model_inputs(images, torch.zeros(len(images), dtype=torch.long, device=images.device))
    z_mean, _, _, detail_mean, _ = model.encode_with_detail(x)
    return z_mean if detail_mean is None else torch.cat([z_mean, detail_mean], dim=1)


@torch.no_grad()
def reconstruct(model: VAE, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, S, S) -> (reconstructions as uint8 (N, S, S), predicted labels (N,)),
    through forward() as in the seed's comparison of originals and reconstructions."""
    x, _ = model_inputs(images, torch.zeros(len(images), dtype=torch.long))
    out = model(x.to(next(model.parameters()).device), detail=False)
    return out.x_recon.sigmoid().mul(255).round().to(torch.uint8).squeeze(1).cpu(), out.y_logits.argmax(dim=1).cpu()
