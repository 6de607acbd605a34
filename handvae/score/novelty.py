"""How new a generated data set's characters are: the distance to the closest record, the
memorisation check of synthetic-data work, set against what a new writer gives.

For digits and letters apart: the median Euclidean distance (pixels in [0, 1]) from each generated
character to the closest real training character of its class, against the same median for the
real test split's characters (writers the model never saw). Their ratio is ~0x for copies of the
training set and ~1.0x for characters as new as a new writer's. Beside it, the share of generated
characters whose closest real one is their own style sample: 100% for redraws of the samples; and
the spread, since novelty is not variety: one mean character per class lies as far from every
record as a new writer's character does, and all its drawings look alike.

Pure torch, no Ray: `handvae score` calls it on the tensors it has read.
"""

from dataclasses import asdict, dataclass

import numpy as np
import torch

from handvae.labels import NUM_CLASSES, NUM_DIGITS

PARTS = {"digits": range(NUM_DIGITS), "letters": range(NUM_DIGITS, NUM_CLASSES)}
SPREAD_SAMPLE = 500
"""Characters of a class (evenly spaced in their order) whose distances to each other give its spread."""
QUERY_CHUNK = 4096
"""Generated or test characters compared with a class's training characters at once: bounds the
distance matrix at QUERY_CHUNK x (the class's training images) floats."""


@dataclass(frozen=True)
class Novelty:
    """One part's (digits' or letters') figures; None where the part has no generated or no test characters."""

    generated: int
    """Generated characters of the part."""
    generated_distance: float | None
    """Median distance from a generated character to the closest real training character of its class."""
    new_writer_distance: float | None
    """The same median for the real test split's characters: what a writer the model never saw gives."""
    ratio: float | None
    """generated_distance / new_writer_distance: ~0 for copies, ~1 for characters as new as a new writer's."""
    nearest_is_own_sample: float | None
    """Share of the generated characters whose closest real training character is their own style
    sample; None where none of them was drawn in the style of a training sample."""
    spread: float | None = None
    """Mean over the part's classes of the median distance between two generated characters of a
    class, against the same for two real training characters of it: ~1 for a set as varied as the
    real one, ~0 where every drawing of a class looks alike."""

    def to_dict(self) -> dict:
        return asdict(self)


def closest_records(
    queries: torch.Tensor, query_labels: torch.Tensor, records: torch.Tensor, record_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, S, S) and labels against real records (M, S, S) and theirs -> (distance (N,)
    to the closest record of the same class, that record's index (N,), -1 where the class has none)."""
    distance = torch.full((len(queries),), float("inf"), dtype=torch.float64)
    nearest = torch.full((len(queries),), -1, dtype=torch.long)
    for c in query_labels.unique().tolist():
        members = torch.nonzero(record_labels == c).flatten()
        if not len(members):
            continue
        reference = _pixels(records[members])
        for chunk in torch.nonzero(query_labels == c).flatten().split(QUERY_CHUNK):
            found = torch.cdist(_pixels(queries[chunk]), reference).min(dim=1)
            distance[chunk], nearest[chunk] = found.values.double(), members[found.indices]
    return distance, nearest


def measure_novelty(
    generated: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, Novelty]:
    """Figures per part ("digits", "letters") of a generated set (images, labels, style sample keys)
    against the real training split (images, labels, order keys) and the real test split (images,
    labels). A generated character's key is its style sample's (`handvae generate` writes the
    sample's source and row), which matches the training record's order key when it is one."""
    generated_images, generated_labels, generated_keys = generated
    train_images, train_labels, train_keys = train
    drawn_distance, nearest = closest_records(generated_images, generated_labels, train_images, train_labels)
    test_distance, _ = closest_records(*test, train_images, train_labels)
    in_train = torch.from_numpy(np.isin(generated_keys.numpy(), train_keys.numpy()))
    own = (nearest >= 0) & (train_keys[nearest.clamp_min(0)] == generated_keys)
    figures = {}
    for part, classes in PARTS.items():
        drawn = _of(generated_labels, classes)
        drawn_median = _median(drawn_distance[drawn])
        test_median = _median(test_distance[_of(test[1], classes)])
        styled = drawn & in_train
        spreads = []
        for c in classes:
            drawn_of_class, real_of_class = generated_images[generated_labels == c], train_images[train_labels == c]
            if len(drawn_of_class) > 1 and len(real_of_class) > 1 and (real_gap := _median_gap(real_of_class)) > 0:
                spreads.append(_median_gap(drawn_of_class) / real_gap)
        figures[part] = Novelty(
            generated=int(drawn.sum()),
            generated_distance=drawn_median,
            new_writer_distance=test_median,
            ratio=drawn_median / test_median if drawn_median is not None and test_median else None,
            nearest_is_own_sample=float(own[styled].double().mean()) if styled.any() else None,
            spread=float(np.mean(spreads)) if spreads else None,
        )
    return figures


def _median_gap(images: torch.Tensor) -> float:
    """The median distance between two of the images (up to SPREAD_SAMPLE of them, evenly spaced)."""
    sample = images[torch.linspace(0, len(images) - 1, min(len(images), SPREAD_SAMPLE)).long()]
    return float(torch.pdist(_pixels(sample)).median())


def _pixels(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1).float().div_(255.0)


def _of(labels: torch.Tensor, classes: range) -> torch.Tensor:
    return (labels >= classes.start) & (labels < classes.stop)


def _median(values: torch.Tensor) -> float | None:
    """The median of the finite values (a class without training records gives inf): the mean of
    the two middle ones for an even count; None for none."""
    values = values[torch.isfinite(values)]
    return float(np.median(values.numpy())) if len(values) else None
