"""Training-time augmentation: off does nothing, on moves ink by at most the configured amounts."""

import pytest
import torch

from handvae.model.augment import Augment, augment


def centre_of_mass(x):
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    mass = x.sum(dim=(1, 2, 3))
    return (x[:, 0] * ys).sum(dim=(1, 2)) / mass, (x[:, 0] * xs).sum(dim=(1, 2)) / mass


def test_off_is_the_identity():
    x = torch.rand(4, 1, 28, 28)
    assert augment(x, Augment()) is x


def test_shifts_stay_within_range_and_differ_per_image():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 12:16, 12:16] = 1.0
    torch.manual_seed(0)
    moved = augment(x, Augment(max_shift=3.0))
    rows, cols = centre_of_mass(moved)
    assert (rows - 13.5).abs().max() <= 3.01 and (cols - 13.5).abs().max() <= 3.01
    assert (rows - 13.5).abs().max() > 1.5 and rows.unique().numel() > 10  # really moved, each its own way
    assert moved.sum(dim=(1, 2, 3)).sub(16).abs().max() < 0.5  # ink is kept (bilinear, inside the frame)


def test_rotation_keeps_the_centre_and_the_ink():
    x = torch.zeros(32, 1, 28, 28)
    x[:, :, 6:22, 13:15] = 1.0  # a vertical bar through the centre
    torch.manual_seed(1)
    turned = augment(x, Augment(max_rotation=30.0))
    rows, cols = centre_of_mass(turned)
    assert (rows - 13.5).abs().max() < 0.6 and (cols - 13.5).abs().max() < 0.6
    assert not torch.allclose(turned, x)


@pytest.mark.parametrize("field,value", [("max_shift", -1.0), ("max_rotation", 90.0), ("max_scale", True)])
def test_bad_ranges_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        Augment(**{field: value})
