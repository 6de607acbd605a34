"""A separately trained classifier that judges generated characters: legibility and variety.

The VAE's own encoder would be a biased judge of its decoder's output, so legibility is measured by
an independent CNN trained on real characters only. To judge blurry VAE output fairly, it trains
with blur augmentation (and small shifts), and every image is scaled to a peak of 1 first, since
generated ink is often fainter than real ink. Pure torch, no Ray.

    legibility = judge's accuracy on generated characters / its accuracy on real test characters
    variety    = mean over characters of (mean pairwise distance between generated images of the
                 character from different styles) / (the same for as many real images of it)
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from handvae.errors import require
from handvae.labels import CHARSET, NUM_CLASSES
from handvae.model.drawing import Drawing, draw_in_styles
from handvae.model.vae import VAE
from handvae.rng import judge_generator


@dataclass(frozen=True)
class JudgeTraining:
    epochs: int = 4
    """Passes over the (class-balanced) training images."""
    images_per_epoch: int | None = None
    """Images drawn per epoch; None: as many as the training set holds. A fixed number gives
    training sets of any size the same budget (the CAS reference classifier, `handvae.score.cas`)."""
    batch_size: int = 128
    """Images per step."""
    learning_rate: float = 1e-3
    """Adam's step size."""
    blur_probability: float = 0.5
    """Share of training images blurred with a random Gaussian (sigma 0.5-1.5 px)."""
    max_shift: int = 2
    """Largest random shift in pixels, each axis."""
    seed: int = 0
    """Seeds weights, sampling and augmentation."""

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            require("", name, getattr(self, name), int, lambda v: v >= 1, ">= 1")
        if self.images_per_epoch is not None:
            require("", "images_per_epoch", self.images_per_epoch, int, lambda v: v >= 1, ">= 1")


class Judge(nn.Module):
    """Two conv blocks and a classifier: a standard small CNN for 28x28 characters."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def judge_inputs(images: torch.Tensor) -> torch.Tensor:
    """uint8 or float images (N, 28, 28) -> (N, 1, 28, 28) floats scaled so each image peaks at 1."""
    x = images.float().unsqueeze(1)
    return x / x.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def _augment(x: torch.Tensor, config: JudgeTraining, generator: torch.Generator) -> torch.Tensor:
    n = len(x)
    blur = torch.rand(n, generator=generator) < config.blur_probability
    if blur.any():
        sigma = 0.5 + torch.rand(int(blur.sum()), generator=generator)
        taps = torch.arange(-3, 4, dtype=torch.float32)
        kernels = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
        kernels = kernels / kernels.sum(dim=1, keepdim=True)  # (B, 7), one 1-D Gaussian per image
        blurred = x[blur]
        blurred = F.conv2d(blurred.transpose(0, 1), kernels[:, None, None, :], padding=(0, 3), groups=len(kernels))
        blurred = F.conv2d(blurred, kernels[:, None, :, None], padding=(3, 0), groups=len(kernels)).transpose(0, 1)
        x = x.clone()
        x[blur] = blurred
    shifts = torch.randint(-config.max_shift, config.max_shift + 1, (2,), generator=generator).tolist()
    x = torch.roll(x, shifts=shifts, dims=(2, 3))  # one shift per batch: cheap, and enough with random batches
    return judge_inputs(x.squeeze(1))


def train_judge(
    images: torch.Tensor,
    labels: torch.Tensor,
    config: JudgeTraining = JudgeTraining(),
    log=print,
    device: torch.device | str = "cpu",
    targets: torch.Tensor | None = None,
) -> Judge:
    """Trains on uint8 images (N, 28, 28) with class-balanced sampling: each epoch draws N images
    (or `images_per_epoch`), every class present equally likely, so the scarce letters count as
    much as the digits. On `device`; the sampling stays on the CPU, so the draws are the same on any.
    `targets` (N, NUM_CLASSES): class probabilities to learn instead of the labels (soft labels, as a
    generated data set's `label_probs`); the labels still set the sampling."""
    generator = judge_generator(config.seed)
    judge = Judge().to(device)
    optimizer = torch.optim.Adam(judge.parameters(), lr=config.learning_rate)
    counts = torch.bincount(labels.cpu(), minlength=NUM_CLASSES).float()
    weights = (1.0 / counts.clamp_min(1))[labels.cpu()]
    x_all, labels = images.to(device).float(), labels.to(device)
    learnt = labels if targets is None else targets.to(device=device, dtype=torch.float32)
    for epoch in range(1, config.epochs + 1):
        judge.train()
        order = torch.multinomial(
            weights, config.images_per_epoch or len(labels), replacement=True, generator=generator
        )
        total, correct = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            logits = judge(_augment(x_all[index].unsqueeze(1), config, generator))
            loss = F.cross_entropy(logits, learnt[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)  # summed on the device: no sync per step
            correct += (logits.argmax(1) == labels[index]).sum()
        log(
            f"judge epoch {epoch}/{config.epochs}: loss {float(total) / len(order):.4f}, balanced train accuracy {float(correct) / len(order):.2%}"
        )
    return judge.eval()


@torch.no_grad()
def judge_predictions(judge: Judge, images: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """(N,) predicted classes, on the CPU, of uint8 images (N, 28, 28) on any device."""
    device = next(judge.parameters()).device
    return torch.cat(
        [
            judge(judge_inputs(images[i : i + batch_size].to(device))).argmax(1).cpu()
            for i in range(0, len(images), batch_size)
        ]
    )


def per_class_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    return {int(c): float((predicted[labels == c] == c).float().mean()) for c in labels.unique()}


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Mean Euclidean distance between all pairs of images (as floats in [0, 1])."""
    x = images.float().flatten(1) / 255.0
    distances = torch.cdist(x, x)
    n = len(x)
    return float(distances.sum() / (n * (n - 1)))


def assess_generation(
    model: VAE,
    judge: Judge,
    real: dict[int, torch.Tensor],
    real_accuracy: dict[int, float],
    styles_per_class: int,
    seed: int,
    drawing: Drawing,
) -> dict:
    """The seed's last cell at scale, judged: the first `styles_per_class` real images of each class
    in `real` (uint8 (n, S, S) per class, in a random order) give the styles, one posterior draw
    each; every style is drawn as all 36 characters, as `drawing` says. `real_accuracy` is the judge's accuracy per
    class on the real images of the split. Returns JSON-ready figures keyed by character."""
    style_images = torch.cat([real[c][:styles_per_class] for c in sorted(real)])
    keys = [(seed, c, i) for c in sorted(real) for i in range(len(real[c][:styles_per_class]))]
    generated = draw_in_styles(model, style_images, keys, torch.arange(NUM_CLASSES), drawing)[:, 0].flatten(0, 1)
    chars = torch.arange(NUM_CLASSES).repeat(len(style_images))
    generated_accuracy = per_class_accuracy(judge_predictions(judge, generated), chars)
    variety = {}
    for c in sorted(real):
        n = min(len(style_images), len(real[c]))
        if n >= 2:
            variety[c] = mean_pairwise_distance(generated[chars == c][:n]) / mean_pairwise_distance(real[c][:n])
    compared = sorted(set(real_accuracy) & set(generated_accuracy))
    real_mean = sum(real_accuracy[c] for c in compared) / len(compared)
    generated_mean = sum(generated_accuracy[c] for c in compared) / len(compared)
    return {
        "styles": len(style_images),
        "generated_images": len(chars),
        "real_accuracy_mean": real_mean,
        "generated_accuracy_mean": generated_mean,
        "legibility": generated_mean / real_mean,
        "variety_mean": sum(variety.values()) / len(variety),
        "real_accuracy": {CHARSET[c]: real_accuracy[c] for c in sorted(real_accuracy)},
        "generated_accuracy": {CHARSET[c]: generated_accuracy[c] for c in sorted(generated_accuracy)},
        "variety": {CHARSET[c]: v for c, v in variety.items()},
    }
