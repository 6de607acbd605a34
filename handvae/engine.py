"""One epoch of training and one pass of evaluation over in-memory tensors. Pure torch, no Ray:
the Ray Train worker loop calls these, and so does the plain-PyTorch baseline of the benchmark.

Images stay uint8 (N, 28, 28) on the device until a batch is taken; `model_inputs` scales them.
Each function returns sums (not means) as one float64 tensor, so ranks can all-reduce them.
"""

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from handvae.augment import augment
from handvae.config import TrainConfig
from handvae.loss import LossTerms, loss_terms, total_loss


def model_inputs(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (B, 28, 28) and labels (B,) -> float images (B, 1, 28, 28) in [0, 1] and int64 labels,
    what the seed's ToTensor() gives the model."""
    return images.unsqueeze(1).float().div_(255.0), labels.long()


TRAIN_SUMS = ("images", "cat_loss", "recon_loss", "kl_loss")
EVAL_SUMS = ("images", "correct", "recon_correct_pixels", "pixels", "cat_loss", "recon_loss", "kl_loss")


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    order: torch.Tensor,
    epoch: int,
    config: TrainConfig,
) -> torch.Tensor:
    """Steps over `images[order]` in batches of config.batch_size; the last may be smaller, as in the seed."""
    model.train()
    device = images.device
    loss_sums = torch.zeros(3, dtype=torch.float64, device=device)  # on the device: no sync per step
    for start in range(0, len(order), config.batch_size):
        index = order[start : start + config.batch_size]
        x, y = model_inputs(images[index], labels[index])
        x = augment(x, config.augment)
        decoder_labels = None
        if config.teacher_forcing:
            forced = torch.rand(len(y), device=device) < config.teacher_forcing
            decoder_labels = torch.where(forced, y, -1)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(x.device, config.bf16):
            terms = loss_terms(x, y, *model(x, decoder_labels=decoder_labels))
        total_loss(terms, config.loss, epoch).backward()
        optimizer.step()
        loss_sums += torch.stack([terms.cat, terms.recon, terms.kl]).detach().double() * len(index)
    return torch.cat([torch.tensor([float(len(order))], dtype=torch.float64), loss_sums.cpu()])


def epoch_order(labels: torch.Tensor, config: TrainConfig, epoch: int) -> torch.Tensor:
    """The epoch's sequence of training image indices, the same on every rank (a function of the
    seed and the epoch): a permutation, or with class_balance a weighted draw with replacement."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    if not config.class_balance:
        return torch.randperm(len(labels), generator=generator)
    counts = torch.bincount(labels).double()
    weights = counts.clamp_min(1).pow(-config.class_balance)[labels]
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)


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
def predict(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor | None = None) -> Predictions:
    """One batch of uint8 images (B, S, S) and labels (B,) through the model, as in the seed's
    evaluation: forward() with a posterior sample of z (drawn with `noise` when given)."""
    x, y = model_inputs(images, labels)
    x_recon, z_mean, log_z_var, y_logits = model(x, noise)
    return Predictions(
        predicted=y_logits.argmax(dim=1),
        recon_hits=((x_recon > 0) == (x > 0.5)).squeeze(1),  # sigmoid(r) > 0.5  <=>  r > 0
        terms=loss_terms(x, y, x_recon, z_mean, log_z_var, y_logits, per_image=True),
    )


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The seed's test figures as sums (EVAL_SUMS): classification hits, reconstruction hits per
    pixel, and the loss terms. Every image counts once."""
    model.eval()
    sums = torch.zeros(len(EVAL_SUMS), dtype=torch.float64)
    for start in range(0, len(labels), batch_size):
        y = labels[start : start + batch_size]
        out = predict(model, images[start : start + batch_size], y)
        figures = [len(y), (out.predicted == y).sum(), out.recon_hits.sum(), out.recon_hits.numel(), out.terms.cat.sum(), out.terms.recon.sum(), out.terms.kl.sum()]
        sums += torch.tensor([float(f) for f in figures], dtype=torch.float64)
    return sums


@torch.no_grad()
def class_latent_means(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """(classes, latent): the mean posterior mean z of each class's images; 0 for a class without any."""
    model.eval()
    sums = torch.zeros(model.config.num_classes, model.config.num_latent, dtype=torch.float64)
    for start in range(0, len(labels), batch_size):
        x, y = model_inputs(images[start : start + batch_size], labels[start : start + batch_size])
        z_mean = model.encode(x)[0]
        sums.index_add_(0, y.cpu(), z_mean.double().cpu())
    counts = torch.bincount(labels.cpu(), minlength=model.config.num_classes).clamp_min(1)
    return (sums / counts[:, None]).float()


def seeded_normal(keys: Sequence[Sequence[int]], size: int) -> torch.Tensor:
    """(len(keys), size) standard normal noise, row i drawn from its own seed keys[i] (a tuple of
    non-negative ints): a row's noise does not depend on which rows share its batch or worker."""
    rows = [np.random.default_rng(list(key)).standard_normal(size, dtype=np.float32) for key in keys]
    return torch.from_numpy(np.stack(rows)) if rows else torch.empty(0, size)


def epoch_figures(train_sums: torch.Tensor, eval_sums: torch.Tensor) -> dict[str, float]:
    """Per-image means as the seed prints them, and the test accuracies."""
    train = dict(zip(TRAIN_SUMS, train_sums.tolist()))
    test = dict(zip(EVAL_SUMS, eval_sums.tolist()))
    return {
        "cat_loss": train["cat_loss"] / train["images"],
        "recon_loss": train["recon_loss"] / train["images"],
        "kl_loss": train["kl_loss"] / train["images"],
        "test_accuracy": test["correct"] / test["images"] if test["images"] else float("nan"),
        "recon_accuracy": test["recon_correct_pixels"] / test["pixels"] if test["pixels"] else float("nan"),
        "train_images": int(train["images"]),
        "test_images": int(test["images"]),
    }


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
