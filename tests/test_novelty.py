"""Novelty of a generated set: distance to the closest real training record, against new writers'."""

import pytest
import torch

from handvae.score.novelty import closest_records, measure_novelty


def real_split(count: int, seed: int, first_key: int):
    """Random ink strokes of two classes, a digit (3) and a letter (12), with their order keys."""
    generator = torch.Generator().manual_seed(seed)
    images = (torch.rand(count, 28, 28, generator=generator) > 0.8).to(torch.uint8) * 255
    labels = torch.tensor([3, 12]).repeat(count // 2)
    return images, labels, torch.arange(first_key, first_key + count)


def test_copies_of_the_training_records_are_0x_and_nearest_their_own_sample():
    train, test = real_split(40, seed=0, first_key=0), real_split(20, seed=1, first_key=1000)
    figures = measure_novelty(train, train, test[:2])
    for part in ("digits", "letters"):
        assert figures[part].generated == 20
        assert figures[part].generated_distance == 0.0 and figures[part].ratio == 0.0
        assert figures[part].new_writer_distance > 5
        assert figures[part].nearest_is_own_sample == 1.0
        assert figures[part].spread == 1.0  # as varied as the real records: they are the real records


def test_characters_by_new_writers_are_1x_and_have_no_own_sample_in_the_training_split():
    train, test = real_split(40, seed=0, first_key=0), real_split(20, seed=1, first_key=1000)
    figures = measure_novelty(test, train, test[:2])
    assert figures["digits"].ratio == 1.0 and figures["letters"].ratio == 1.0
    assert figures["letters"].nearest_is_own_sample is None
    # Another sample of new writers: about 1x, not exactly.
    other = real_split(200, seed=2, first_key=5000)
    figures = measure_novelty(other, train, test[:2])
    assert figures["digits"].ratio == pytest.approx(1.0, abs=0.05) and figures["letters"].ratio == pytest.approx(
        1.0, abs=0.05
    )


def test_distances_by_hand_per_class_and_the_share_nearest_their_own_sample():
    blank, full = torch.zeros(28, 28, dtype=torch.uint8), torch.full((28, 28), 255, dtype=torch.uint8)
    one_pixel, four_pixels = blank.clone(), blank.clone()
    one_pixel[0, 0] = 255
    four_pixels[0, :4] = 255
    # Class 3: a blank record (key 7) and a full one (key 8); class 12: a full record only (key 9).
    train = (torch.stack([blank, full, full]), torch.tensor([3, 3, 12]), torch.tensor([7, 8, 9]))
    test = (torch.stack([four_pixels, full]), torch.tensor([3, 12]))
    # A one-pixel 3 drawn from the blank record (1 from it), one drawn from the full record (nearest: the blank one, not its own),
    # and a blank 12 drawn from a sample outside the training split (28 from the full record).
    generated = (torch.stack([one_pixel, one_pixel, blank]), torch.tensor([3, 3, 12]), torch.tensor([7, 8, 100]))
    distance, nearest = closest_records(generated[0], generated[1], train[0], train[1])
    assert distance.tolist() == [1.0, 1.0, 28.0] and nearest.tolist() == [0, 0, 2]
    figures = measure_novelty(generated, train, test)
    digits, letters = figures["digits"], figures["letters"]
    assert (digits.generated, digits.generated_distance, digits.new_writer_distance, digits.ratio) == (2, 1.0, 2.0, 0.5)
    assert digits.nearest_is_own_sample == 0.5
    assert (letters.generated_distance, letters.new_writer_distance, letters.ratio, letters.nearest_is_own_sample) == (
        28.0,
        0.0,
        None,
        None,
    )


def test_a_part_without_generated_characters_has_no_figures():
    train, test = real_split(40, seed=0, first_key=0), real_split(20, seed=1, first_key=1000)
    digits_only = tuple(t[train[1] == 3] for t in train)
    figures = measure_novelty(digits_only, train, test[:2])
    assert (
        figures["letters"].generated == 0
        and figures["letters"].ratio is None
        and figures["letters"].nearest_is_own_sample is None
    )
    assert figures["digits"].ratio == 0.0


def test_one_character_per_class_is_new_and_has_no_spread():
    train, test = real_split(40, seed=0, first_key=0), real_split(20, seed=1, first_key=1000)
    # Each class drawn as one image: the mean of its training records, 50 times.
    means = torch.stack([train[0][train[1] == c].float().mean(0).round().to(torch.uint8) for c in (3, 12)])
    labels = torch.tensor([3, 12]).repeat(50)
    figures = measure_novelty((means.repeat(50, 1, 1), labels, torch.full((100,), 10**6)), train, test[:2])
    for part in ("digits", "letters"):
        assert figures[part].ratio > 0.5 and figures[part].spread == 0.0
