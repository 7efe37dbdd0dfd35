"""Argument checks shared by layers, applications, converters and robustness.

Every check returns the normalised value or raises a `ValueError` that says
what is wrong, the rule, and `Received: name=value`, as Keras' own layers do.
Booleans are not numbers here: `True` is not a positive integer, and a flag
accepts only `True` or `False` (not `"False"`, not `0`).
"""

import math

import numpy as np


def is_int(value):
    """An int or NumPy integer that is not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value):
    """A finite or infinite real number (int, float, NumPy), not a bool."""
    return isinstance(value, (int, float, np.number)) and not isinstance(
        value, (bool, np.bool_, complex, np.complexfloating)
    )


def positive_int(value, name, allow_none=False, maximum=None):
    """An integer >= 1 (or `None` when allowed), at most `maximum`."""
    if value is None and allow_none:
        return None
    if not is_int(value) or value <= 0:
        rule = "a positive integer" + (" or None" if allow_none else "")
        raise ValueError(f"`{name}` must be {rule}. Received: {name}={value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(
            f"`{name}` must be at most {maximum:,}. Received: {name}={value!r}"
        )
    return int(value)


def non_negative_int(value, name, allow_none=False):
    """An integer >= 0 (or `None` when allowed)."""
    if value is None and allow_none:
        return None
    if not is_int(value) or value < 0:
        rule = "a non-negative integer" + (" or None" if allow_none else "")
        raise ValueError(f"`{name}` must be {rule}. Received: {name}={value!r}")
    return int(value)


def boolean(value, name):
    """`True` or `False` (Python or NumPy bool), nothing else."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"`{name}` must be True or False. Received: {name}={value!r}"
        )
    return bool(value)


def one_of(value, name, choices):
    """One of `choices` (compared with `==`, so no type coercion)."""
    if not any(
        value is c or (type(value) is type(c) and value == c) for c in choices
    ):
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"`{name}` must be one of {listed}. Received: {name}={value!r}"
        )
    return value


def data_format(value):
    """`None` (Keras' global setting) or a Keras data format."""
    if value is None:
        import keras

        return keras.config.image_data_format()
    return one_of(value, "data_format", ("channels_last", "channels_first"))


def number_in(value, name, low, high, low_open=False, high_open=False):
    """A finite number in the interval from `low` to `high`."""
    ok = is_number(value) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(
            f"`{name}` must be a number in {left}{low}, {high}{right}. "
            f"Received: {name}={value!r}"
        )
    return value


def finite_range(value, name, bound=None):
    """Two finite numbers `(low, high)` with `low < high`.

    With `bound`, both must lie in `[-bound, bound]`.
    """
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    ok = (
        len(pair) == 2
        and all(is_number(v) and math.isfinite(v) for v in pair)
        and pair[0] < pair[1]
    )
    if ok and bound is not None:
        ok = all(abs(v) <= bound for v in pair)
    if not ok:
        within = "" if bound is None else f" within [-{bound:g}, {bound:g}]"
        raise ValueError(
            f"`{name}` must be two finite, strictly increasing numbers "
            f"(low, high){within}. Received: {name}={value!r}"
        )
    return (float(pair[0]), float(pair[1]))


def int_pair(value, name):
    """A positive int, or a pair of positive ints, as a pair."""
    pair = (value, value) if is_int(value) else value
    try:
        pair = tuple(pair)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(is_int(v) and v > 0 for v in pair):
        raise ValueError(
            f"`{name}` must be a positive integer or a tuple of 2 positive "
            f"integers. Received: {name}={value!r}"
        )
    return (int(pair[0]), int(pair[1]))
