"""One epoch of training and one pass of evaluation over in-memory tensors. Pure torch, no Ray:
the Ray Train worker loop calls these, and so does the plain-PyTorch baseline of the benchmark.

Images stay uint8 (N, 28, 28) on the device until a batch is taken; `model_inputs` scales them.
Each function returns sums (not means) as one float64 tensor, so ranks can all-reduce them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from handvae.model.augment import augment
from handvae.model.loss import LossTerms, loss_terms, total_loss
from handvae.model.vae import model_inputs
from handvae.rng import another_of_class, epoch_generator, partner_uniforms

if TYPE_CHECKING:  # the recipe imports the model: a type only here
    from handvae.train.config import TrainConfig


TRAIN_SUMS = ("images", "cat_loss", "recon_loss", "kl_loss", "detail_recon_loss", "detail_kl_loss")


class NonFiniteLoss(Exception):
    """A step whose gradients are not finite (nor, then, its loss), raised after backward and before
    the optimiser's step, so the weights stay finite. Decided from the gradients, which DDP has
    averaged over the ranks before backward returns: every rank raises at the same step."""

    def __init__(self, step: int, terms: dict[str, str]):
        super().__init__(f"step {step}: the loss is not finite ({terms})")
        self.step, self.terms = step, terms


EVAL_SUMS = ("images", "correct", "recon_correct_pixels", "pixels", "cat_loss", "recon_loss", "kl_loss")


def train_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    epoch: int,
    config: TrainConfig,
    latent_sums: torch.Tensor | None = None,
) -> torch.Tensor:
    """One optimiser step per batch of uint8 images (B, 28, 28) and labels (B,), on the model's
    device; a batch may carry a third tensor, the partner images (B, 28, 28) that the detail
    decoder is to draw from each image's codes (`TrainConfig.pairing`), else it draws the image
    itself. With `latent_sums` (classes, latent + 1), also adds each image's posterior mean z to
    its class's row and 1 to the row's last column: the class latent means, accumulated in the
    epoch's own forward passes instead of another pass over the data."""
    model.train()
    device = _device(model)
    loss_sums = torch.zeros(len(TRAIN_SUMS) - 1, dtype=torch.float64, device=device)  # on the device: no sync per step
    images_seen = 0
    for step, (images, labels, *partners) in enumerate(batches, start=1):
        x, y = model_inputs(images.to(device, non_blocking=True), labels.to(device, non_blocking=True))
        x = augment(x, config.augment)
        # The partner as written: augmentation moves what the encoder sees, not what is to be drawn.
        detail_target = model_inputs(partners[0].to(device, non_blocking=True), labels)[0] if partners else None
        decoder_labels = None
        if config.teacher_forcing:
            forced = torch.rand(len(y), device=device) < config.teacher_forcing
            decoder_labels = torch.where(forced, y, -1)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(x.device, config.bf16):
            out = model(x, decoder_labels=decoder_labels)
            terms = loss_terms(x, y, out, detail_target=detail_target)
        total_loss(terms, config.loss, epoch).backward()
        if not _finite_gradients(model):
            raise NonFiniteLoss(step, _non_finite_terms(terms, config, epoch))
        optimizer.step()
        loss_sums += torch.stack(
            [terms.cat, terms.recon, terms.kl, terms.detail_recon, terms.detail_kl]
        ).detach().double() * len(y)
        images_seen += len(y)
        if latent_sums is not None:
            with torch.no_grad():
                counted = torch.cat(
                    [out.z_mean.detach().double(), torch.ones(len(y), 1, dtype=torch.float64, device=device)], dim=1
                )
                latent_sums.index_add_(0, y, counted)
    return torch.cat([torch.tensor([float(images_seen)], dtype=torch.float64), loss_sums.cpu()])


def _non_finite_terms(terms: LossTerms, config: TrainConfig, epoch: int) -> dict[str, str]:
    """The weighted terms of the loss that are not finite on this rank, as `name = weight x value`."""
    w = config.loss
    weighted = {
        "cat_loss": (w.cat_weight, terms.cat),
        "recon_loss": (1.0, terms.recon),
        "kl_loss": (w.kl_weight(epoch), terms.kl),
        "detail_recon_loss": (1.0, terms.detail_recon),
        "detail_kl_loss": (w.detail_kl_weight, terms.detail_kl),
    }
    bad = {
        name: f"{weight:g} x {value.item():g}"
        for name, (weight, value) in weighted.items()
        if not torch.isfinite(weight * value.float())
    }
    return bad or {"gradients": "not finite (the loss of another worker was not)"}


def _finite_gradients(model: torch.nn.Module) -> bool:
    """One norm per gradient, one sync per step: the same answer on every DDP rank."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()) if grads else True


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    order: torch.Tensor,
    epoch: int,
    config: TrainConfig,
    latent_sums: torch.Tensor | None = None,
) -> torch.Tensor:
    """`train_steps` over `images[order]` in batches of config.batch_size; the last may be smaller, as in the seed."""
    batches = ((images[index], labels[index]) for index in order.split(config.batch_size))
    return train_steps(model, optimizer, batches, epoch, config, latent_sums)


def latent_means(latent_sums: torch.Tensor) -> torch.Tensor:
    """(classes, latent) means from `train_steps`' sums; 0 for a class without images."""
    return (latent_sums[:, :-1] / latent_sums[:, -1:].clamp_min(1)).float()


def epoch_order(labels: torch.Tensor, config: TrainConfig, epoch: int) -> torch.Tensor:
    """The epoch's sequence of training image indices, the same on every rank (a function of the
    seed and the epoch): a permutation, or with class_balance a weighted draw with replacement."""
    generator = epoch_generator(config.seed, epoch)
    if not config.class_balance:
        return torch.randperm(len(labels), generator=generator)
    counts = torch.bincount(labels).double()
    weights = counts.clamp_min(1).pow(-config.class_balance)[labels]
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)


def epoch_partners(labels: torch.Tensor, seed: int, epoch: int, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) int64: each training image's partner in an epoch, for pair training
    (`TrainConfig.pairing`): another image of its class, uniformly among them; itself only where
    it is its class's only image. With `candidates` (N, k), uniformly one of its row's k instead
    (`nearest_in_class`). A function of (seed, epoch) and the images in their stable order, the
    same on every rank, so a resumed run draws the same partners."""
    n = len(labels)
    uniform = partner_uniforms(seed, epoch, n)
    if candidates is not None:
        return candidates[torch.arange(n), (uniform * candidates.shape[1]).long()]
    counts = torch.bincount(labels, minlength=1)
    starts = counts.cumsum(0) - counts
    by_class = torch.argsort(labels, stable=True)  # each class's images together, in index order
    position = torch.empty(n, dtype=torch.long)
    position[by_class] = torch.arange(n)
    within, size = position - starts[labels], counts[labels]
    other = torch.from_numpy(another_of_class(within.numpy(), size.numpy(), uniform.numpy()))
    return by_class[starts[labels] + other]


@torch.no_grad()
def nearest_in_class(images: torch.Tensor, labels: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """(N, k) int64: for each uint8 image (N, S, S), its k nearest other images of its class by
    Euclidean distance, nearest first (pairing "neighbours"). A class with k or fewer other images
    repeats them in turn; an image alone in its class has only itself."""
    candidates = torch.empty(len(labels), k, dtype=torch.long)
    for c in labels.unique().tolist():
        members = torch.nonzero(labels == c).flatten()
        if len(members) == 1:
            candidates[members] = members
            continue
        pixels = images[members].flatten(1).float()
        found = min(k, len(members) - 1)
        for rows in torch.arange(len(members)).split(chunk):
            distance = torch.cdist(pixels[rows], pixels)
            distance[torch.arange(len(rows)), rows] = float("inf")  # never the image itself
            nearest = distance.topk(found, dim=1, largest=False).indices
            candidates[members[rows]] = members[nearest[:, torch.arange(k) % found]]
    return candidates


@dataclass(frozen=True)
class Predictions:
    """What the model makes of each image of a batch, as the seed's evaluation reads it."""

    predicted: torch.Tensor
    """(B,) int64: the class with the highest logit."""
    recon_hits: torch.Tensor
    """(B, S, S) bool: sigmoid(recon) > 0.5 agrees with image > 0.5, pixel by pixel."""
    terms: LossTerms
    """The loss terms, one value per image."""


@torch.no_grad()
def predict(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor | None = None
) -> Predictions:
    """One batch of uint8 images (B, S, S) and labels (B,) through the model, as in the seed's
    evaluation: forward() with a posterior sample of z (drawn with `noise` when given)."""
    x, y = model_inputs(images, labels)
    out = model(x, noise, detail=False)
    return Predictions(
        predicted=out.y_logits.argmax(dim=1),
        recon_hits=((out.x_recon > 0) == (x > 0.5)).squeeze(1),  # sigmoid(r) > 0.5  <=>  r > 0
        terms=loss_terms(x, y, out, per_image=True),
    )


def evaluate(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """`evaluate_batches` over in-memory tensors."""
    return evaluate_batches(
        model, ((images[s : s + batch_size], labels[s : s + batch_size]) for s in range(0, len(labels), batch_size))
    )


def evaluate_batches(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The seed's test figures as sums (EVAL_SUMS): classification hits, reconstruction hits per
    pixel, and the loss terms. Every image counts once."""
    model.eval()
    device = _device(model)
    sums = torch.zeros(len(EVAL_SUMS), dtype=torch.float64)
    for images, labels in batches:
        y = labels.to(device)
        out = predict(model, images.to(device), y)
        figures = [
            len(y),
            (out.predicted == y).sum(),
            out.recon_hits.sum(),
            out.recon_hits.numel(),
            out.terms.cat.sum(),
            out.terms.recon.sum(),
            out.terms.kl.sum(),
        ]
        sums += torch.tensor([float(f) for f in figures], dtype=torch.float64)
    return sums


@torch.no_grad()
def class_latent_means(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 4096
) -> torch.Tensor:
    """(classes, latent): the mean posterior mean z of each class's images; 0 for a class without any."""
    model.eval()
    sums = torch.zeros(model.config.num_classes, model.config.num_latent, dtype=torch.float64)
    for start in range(0, len(labels), batch_size):
        x, y = model_inputs(images[start : start + batch_size], labels[start : start + batch_size])
        z_mean = model.encode(x)[0]
        sums.index_add_(0, y.cpu(), z_mean.double().cpu())
    counts = torch.bincount(labels.cpu(), minlength=model.config.num_classes).clamp_min(1)
    return (sums / counts[:, None]).float()


def epoch_figures(train_sums: torch.Tensor, eval_sums: torch.Tensor) -> dict[str, float]:
    """Per-image means as the seed prints them, and the test accuracies."""
    train = dict(zip(TRAIN_SUMS, train_sums.tolist()))
    test = dict(zip(EVAL_SUMS, eval_sums.tolist()))
    return {
        "cat_loss": train["cat_loss"] / train["images"],
        "recon_loss": train["recon_loss"] / train["images"],
        "kl_loss": train["kl_loss"] / train["images"],
        "detail_recon_loss": train["detail_recon_loss"] / train["images"],
        "detail_kl_loss": train["detail_kl_loss"] / train["images"],
        "test_accuracy": test["correct"] / test["images"] if test["images"] else float("nan"),
        "recon_accuracy": test["recon_correct_pixels"] / test["pixels"] if test["pixels"] else float("nan"),
        "train_images": int(train["images"]),
        "test_images": int(test["images"]),
    }


def _device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters are: batches read on the CPU go there."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
