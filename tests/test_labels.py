import numpy as np
import pytest

from handvae.labels import CHARSET, NUM_CLASSES, char_to_label, label_to_char


def test_digits_then_letters():
    assert NUM_CLASSES == 36
    assert [label_to_char(i) for i in (0, 9, 10, 35)] == ["0", "9", "A", "Z"]
    assert [char_to_label(c) for c in "09AZ"] == [0, 9, 10, 35]


def test_round_trip_every_class_and_numpy_ints():
    assert all(char_to_label(label_to_char(i)) == i for i in range(NUM_CLASSES))
    assert label_to_char(np.uint8(12)) == "C"
    assert "".join(map(label_to_char, range(NUM_CLASSES))) == CHARSET


@pytest.mark.parametrize("bad", [-1, 36, 3.0, "A", True, None])
def test_label_out_of_range_is_rejected(bad):
    with pytest.raises(ValueError, match="0-35"):
        label_to_char(bad)


@pytest.mark.parametrize("bad", ["a", "AB", "", "?", 5])
def test_unsupported_character_is_rejected(bad):
    with pytest.raises(ValueError, match="0-9 or A-Z"):
        char_to_label(bad)
