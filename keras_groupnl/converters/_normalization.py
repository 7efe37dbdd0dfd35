"""How a model's input relates to camera pixels: `(pixel - mean) / std`.

Android's image clients hand a model pixels in [0, 255] and, for a float
input, normalise them with the `mean` and `std` the model's metadata gives.
`resolve` finds them: from the `normalization` argument of `convert`, or
else from the representative data, by the preprocessing that maps the data
back onto pixels: raw pixels, `x / 255`, `x / 127.5 - 1`, or the ImageNet
mean and standard deviation of `keras_groupnl.applications.resnet` (read
from its `preprocess_input`). Of those that map every value into
[0, 255] (within `TOLERANCE`), the one that spreads the data widest wins.
Data that fits none is not taken for pixels: the model then gets no image
metadata, and the report says to pass `normalization`.
"""

import dataclasses
import numbers
import typing

import numpy as np

# Pixels a value may fall outside [0, 255] and still count as a pixel
# (interpolation when images were resized overshoots a little).
TOLERANCE = 0.02 * 255
# The narrowest spread (in pixels) taken for image data.
MIN_SPREAD = 64.0


@dataclasses.dataclass(frozen=True)
class Normalization:
    """`model input = (pixel - mean) / std`, per channel.

    Attributes:
        mean, std: one value per input channel.
        source: where they come from (the `normalization` argument, or the
            preprocessing the representative data matched).
    """

    mean: typing.Tuple[float, ...]
    std: typing.Tuple[float, ...]
    source: str

    @property
    def per_channel(self):
        """Whether the channels differ (Android's clients take one value)."""
        return len(set(self.mean)) > 1 or len(set(self.std)) > 1

    def to_pixels(self, x):
        return np.asarray(x, np.float64) * self.std + np.asarray(self.mean)

    def from_pixels(self, pixels):
        pixels = np.asarray(pixels, np.float64)
        return ((pixels - self.mean) / np.asarray(self.std)).astype(np.float32)


def argument(value):
    """Checks `convert`'s `normalization`: `None` or `(mean, std)`, each a
    number or one number per channel. Returns `None` or two tuples."""
    if value is None:
        return None
    message = (
        "`normalization` must be `(mean, std)` such that the model input "
        "is `(pixel - mean) / std` for pixels in [0, 255]; each a number or "
        "one number per channel, std > 0. E.g. (0, 255) for inputs in "
        f"[0, 1]. Received: normalization={value!r}"
    )
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(message)
    parts = []
    for part in value:
        values = part if isinstance(part, (tuple, list)) else (part,)
        if not values or not all(_is_number(v) for v in values):
            raise ValueError(message)
        parts.append(tuple(float(v) for v in values))
    mean, std = parts
    if min(std) <= 0 or not np.all(np.isfinite(mean + std)):
        raise ValueError(message)
    if len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise ValueError(message)
    return mean, std


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def resolve(given, x):
    """The `Normalization` of image samples `x` (batch, rows, cols,
    channels), or `None` when `x` is not taken for images."""
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        if given is not None:
            raise ValueError(
                "`normalization` applies to image inputs (batch, rows, "
                "columns, 1 or 3 channels). Received: normalization="
                f"{given!r} for inputs of shape {tuple(x.shape)}"
            )
        return None
    channels = x.shape[-1]
    if given is not None:
        mean, std = (_per_channel(v, channels, given) for v in given)
        return Normalization(mean, std, "the normalization argument")
    return infer(x)


def _per_channel(values, channels, given):
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ValueError(
            f"`normalization` has {len(values)} values, the model input "
            f"{channels} channel(s). Received: normalization={given!r}"
        )
    return tuple(values)


def infer(x):
    """The known preprocessing that maps `x` back onto pixels, or `None`."""
    channels = x.shape[-1]
    low = x.reshape(-1, channels).min(0).astype(np.float64)
    high = x.reshape(-1, channels).max(0).astype(np.float64)
    best, best_spread = None, MIN_SPREAD
    for candidate in known(channels):
        lowest = np.min(candidate.to_pixels(low))
        highest = np.max(candidate.to_pixels(high))
        fits = lowest >= -TOLERANCE and highest <= 255 + TOLERANCE
        if fits and highest - lowest >= best_spread:
            best, best_spread = candidate, highest - lowest
    return best


def known(channels):
    """The preprocessings `infer` recognises, for `channels` channels."""
    found = [
        Normalization((0.0,) * channels, (1.0,) * channels, "raw pixels"),
        Normalization(
            (0.0,) * channels, (255.0,) * channels, "pixels / 255, in [0, 1]"
        ),
        Normalization(
            (127.5,) * channels,
            (127.5,) * channels,
            "pixels / 127.5 - 1, in [-1, 1]",
        ),
    ]
    found.append(_resnet(channels))
    return found


def _resnet(channels):
    """What `applications.resnet.preprocess_input` does, read from it."""
    from keras_groupnl.applications import resnet

    ends = np.zeros((2, 1, 1, channels), np.float32)
    ends[1] = 255.0
    zero, full = np.asarray(resnet.preprocess_input(ends), np.float64)
    std = 255.0 / (full - zero).reshape(-1)
    mean = -zero.reshape(-1) * std
    return Normalization(
        tuple(float(m) for m in mean),
        tuple(float(s) for s in std),
        "ImageNet mean and std (applications.resnet.preprocess_input)",
    )
