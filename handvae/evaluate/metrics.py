"""The seed's evaluation figures, accumulated batch by batch. Pure torch and torchmetrics, no Ray.

torchmetrics counts the classification figures (weighted and per-class accuracy, confusion matrix);
the reconstruction figures are per-pixel hit counts, which is what the seed's BinaryAccuracy at each
pixel computes. Everything is a sum, so batches may arrive in any order and from any worker.
"""

from collections import defaultdict

import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from handvae.labels import CHARSET, NUM_CLASSES

LOSS_NAMES = ("cat", "recon", "kl")


class EvaluationMetrics:
    def __init__(self, image_side: int = 28, num_classes: int = NUM_CLASSES):
        self.accuracy = MulticlassAccuracy(num_classes=num_classes, average="weighted")
        self.per_class = MulticlassAccuracy(num_classes=num_classes, average=None)
        self.confusion = MulticlassConfusionMatrix(num_classes=num_classes)
        self.pixel_hits = torch.zeros(image_side, image_side, dtype=torch.int64)
        self.loss_sums = torch.zeros(len(LOSS_NAMES), dtype=torch.float64)
        self.images = 0
        self.by_source: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # source -> [images, correct]

    def update(
        self, labels: torch.Tensor, predicted: torch.Tensor, recon_hits: torch.Tensor, losses: torch.Tensor, sources
    ) -> None:
        """One batch: labels and predicted classes (B,), reconstruction hits (B, S, S) bool, the
        loss terms per image (B, 3) in LOSS_NAMES order, and each image's source file."""
        labels, predicted = labels.long(), predicted.long()
        self.accuracy.update(predicted, labels)
        self.per_class.update(predicted, labels)
        self.confusion.update(predicted, labels)
        self.pixel_hits += recon_hits.sum(dim=0)
        self.loss_sums += losses.double().sum(dim=0)
        self.images += len(labels)
        correct = (predicted == labels).tolist()
        for source, hit in zip(sources, correct):
            counts = self.by_source[source]
            counts[0] += 1
            counts[1] += hit

    def compute(self) -> dict:
        """Every figure, as plain Python numbers and lists (JSON-ready)."""
        if self.images == 0:
            raise ValueError("no images were evaluated")
        confusion = self.confusion.compute()
        support = confusion.sum(dim=1)
        per_class = self.per_class.compute()
        # torchmetrics gives 0 for a class with no images; such a class has no accuracy at all.
        per_class_accuracy = {CHARSET[c]: float(per_class[c]) for c in range(len(support)) if support[c] > 0}
        pixel_accuracy = self.pixel_hits.double() / self.images
        return {
            "images": self.images,
            "accuracy": float(self.accuracy.compute()),
            "mean_per_class_accuracy": sum(per_class_accuracy.values()) / len(per_class_accuracy),
            "recon_accuracy": float(pixel_accuracy.mean()),
            "per_class_accuracy": per_class_accuracy,
            "per_class_images": {CHARSET[c]: int(support[c]) for c in range(len(support)) if support[c] > 0},
            "by_source": {s: {"images": n, "accuracy": hits / n} for s, (n, hits) in sorted(self.by_source.items())},
            "loss": {name: float(total) / self.images for name, total in zip(LOSS_NAMES, self.loss_sums)},
            "per_pixel_recon_accuracy": pixel_accuracy.tolist(),
            "confusion_matrix": confusion.tolist(),
        }
