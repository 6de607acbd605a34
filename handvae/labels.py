"""The 36 classes: digits 0-9 are labels 0-9, letters A-Z are labels 10-35."""

import operator
import string

CHARSET = string.digits + string.ascii_uppercase
NUM_CLASSES = len(CHARSET)
NUM_DIGITS = 10
NUM_LETTERS = 26


def label_to_char(label: int) -> str:
    """The character for a model label 0-35 (any integer type, numpy's included)."""
    try:
        index = operator.index(label)
    except TypeError:
        index = None
    if index is None or isinstance(label, bool) or not 0 <= index < NUM_CLASSES:
        raise ValueError(f"label must be an integer 0-{NUM_CLASSES - 1} (0-9 digits, 10-35 A-Z), got {label!r}")
    return CHARSET[index]


def char_to_label(char: str) -> int:
    """The model label 0-35 for a digit or an upper-case letter."""
    if not isinstance(char, str) or len(char) != 1 or char not in CHARSET:
        raise ValueError(f"character must be one of 0-9 or A-Z, got {char!r}")
    return CHARSET.index(char)
