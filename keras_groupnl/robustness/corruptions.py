"""Common image corruptions in pure NumPy, in the style of ImageNet-C.

The corruptions follow the published ideas of Hendrycks & Dietterich,
"Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019; ImageNet-C / CIFAR-10-C). They are written from
scratch here with NumPy only (no SciPy, Pillow or OpenCV), and the severity
parameters were chosen for small images (28x28 Fashion-MNIST, 32x32 CIFAR),
so numbers are not comparable with the published CIFAR-10-C files; they are
meant for comparing models against each other on the same corrupted data.

All corruptions work on float64 copies of the images scaled to [0, 1]; the
result is clipped to [0, 1] and converted back to the input's dtype (uint8
is rounded to the nearest integer).

Severity parameters (severity 1 .. 5, damage increases left to right):

================  ===============================  ===========================
name              parameter                        severity 1, 2, 3, 4, 5
================  ===============================  ===========================
gaussian_noise    noise std (image in [0, 1])      0.04, 0.07, 0.11, 0.16, 0.23
shot_noise        photons per unit intensity lam   100, 50, 25, 12, 6
impulse_noise     salt-and-pepper fraction         0.02, 0.05, 0.09, 0.15, 0.23
gaussian_blur     Gaussian sigma (pixels)          0.5, 0.8, 1.2, 1.7, 2.4
defocus_blur      disk radius (pixels)             1.0, 1.5, 2.0, 2.5, 3.0
contrast          fraction of contrast kept        0.7, 0.5, 0.35, 0.2, 0.1
brightness        value added (image in [0, 1])    0.1, 0.2, 0.3, 0.4, 0.5
pixelate          downsampling factor              0.85, 0.7, 0.55, 0.4, 0.3
jpeg_compression  JPEG-like quality factor         75, 50, 30, 15, 7
================  ===============================  ===========================

Definitions (x is the image in [0, 1], every channel treated the same way):

* ``gaussian_noise``: ``x + N(0, std^2)`` per pixel and channel.
* ``shot_noise``: ``Poisson(lam * x) / lam`` per pixel and channel.
* ``impulse_noise``: each pixel and channel independently becomes 0 with
  probability ``fraction / 2`` and 1 with probability ``fraction / 2``.
* ``gaussian_blur``: separable Gaussian kernel of radius ``ceil(3 sigma)``,
  normalised to sum 1, with reflect padding (half-sample symmetric, i.e.
  ``a b c | c b a``, SciPy's ``mode="reflect"``), so a constant image stays
  exactly constant.
* ``defocus_blur``: anti-aliased disk kernel (each tap is the fraction of its
  pixel covered by a disk of the given radius, estimated with 16x16
  sub-samples), normalised to sum 1, same reflect padding.
* ``contrast``: ``(x - m) * c + m`` with ``m`` the mean of each image over
  height, width and channels.
* ``brightness``: ``x + delta`` on every channel (then clipped).
* ``pixelate``: box (area-average) downsampling of height and width to
  ``max(1, round(size * factor))`` pixels, then nearest-neighbour upsampling
  back to the original size.
* ``jpeg_compression``: a JPEG-like codec, not real JPEG: each channel is
  level-shifted to [-128, 127], edge-padded to a multiple of 8, cut into
  8x8 blocks, transformed with an orthonormal 8x8 DCT-II (precomputed
  matrix), quantised with the standard JPEG luminance table (ITU-T T.81,
  Annex K) scaled by the quality factor as libjpeg does, dequantised and
  inverse transformed. There is no colour conversion, no chroma subsampling
  and no entropy coding (which is lossless anyway), so the artefacts are the
  blocking and ringing of real JPEG on a per-channel basis. Quality 100
  quantises with step 1 and is close to the identity.

Randomness: every call draws from ``numpy.random.default_rng`` seeded from
``(seed, crc32(name), severity)``, so each (name, severity) pair is
reproducible and independent of the order of calls (and of NumPy's global
random state). The noise of a batch is one draw in batch order, so an
image's noise depends on its position in the batch; a single image gets the
same result as a batch holding only it.

Shapes: ``(H, W)`` and ``(H, W, C)`` single images, ``(N, H, W)`` and
``(N, H, W, C)`` batches. A rank-3 array is ambiguous; it is read as a
single ``(H, W, C)`` image when its last axis has 1, 3 or 4 entries and as a
batch of grayscale ``(N, H, W)`` images otherwise. Pass ``batched=True`` or
``batched=False`` to decide explicitly.
"""

import zlib

import numpy as np

from keras_groupnl import _validation

CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "gaussian_blur",
    "defocus_blur",
    "contrast",
    "brightness",
    "pixelate",
    "jpeg_compression",
)

SEVERITIES = (1, 2, 3, 4, 5)

# The table in the module docstring, as data: the parameter of each severity.
SEVERITY_PARAMS = {
    "gaussian_noise": (0.04, 0.07, 0.11, 0.16, 0.23),
    "shot_noise": (100, 50, 25, 12, 6),
    "impulse_noise": (0.02, 0.05, 0.09, 0.15, 0.23),
    "gaussian_blur": (0.5, 0.8, 1.2, 1.7, 2.4),
    "defocus_blur": (1.0, 1.5, 2.0, 2.5, 3.0),
    "contrast": (0.7, 0.5, 0.35, 0.2, 0.1),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "pixelate": (0.85, 0.7, 0.55, 0.4, 0.3),
    "jpeg_compression": (75, 50, 30, 15, 7),
}

# Float images may overshoot [0, 1] by this much (they are clipped first).
FLOAT_TOLERANCE = 1e-3

# Images processed at a time, to bound the float64 working memory.
_CHUNK = 512

# Standard JPEG luminance quantisation table (ITU-T T.81, Annex K, Table K.1).
JPEG_LUMINANCE_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)


def _dct_matrix(n=8):
    """Orthonormal DCT-II matrix D: coefficients = D @ block @ D.T."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0, :] = np.sqrt(1.0 / n)
    return d


_DCT8 = _dct_matrix(8)


def corruption_names():
    """Returns the names of the available corruptions, as a list."""
    return list(CORRUPTIONS)


# ---------------------------------------------------------------------------
# Validation and conversion.
# ---------------------------------------------------------------------------


def _check_name(name):
    if not isinstance(name, str) or name not in CORRUPTIONS:
        raise ValueError(
            "Unknown corruption. Expected one of "
            f"{', '.join(CORRUPTIONS)}. Received: name={name!r}"
        )


def _check_severity(severity):
    if not _validation.is_int(severity) or not 1 <= severity <= 5:
        raise ValueError(
            "`severity` must be an int in 1..5. "
            f"Received: severity={severity!r}"
        )
    return int(severity)


def _check_seed(seed):
    return _validation.non_negative_int(seed, "seed")


def _validate_images(images, batched):
    """Checks `images`; returns (it as an (N, H, W, C) view, its shape).

    The returned array keeps the input dtype; float values are checked
    against [0, 1] with `FLOAT_TOLERANCE`.
    """
    if batched not in (None, True, False):
        raise ValueError(
            "`batched` must be None, True or False. "
            f"Received: batched={batched!r}"
        )
    x = np.asarray(images)
    dtype = x.dtype
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
        raise ValueError(
            "`images` must be uint8 in [0, 255] or float in [0, 1]. "
            f"Received: images.dtype={dtype}"
        )
    shape = x.shape
    rank = x.ndim
    if batched is None and rank not in (2, 3, 4):
        raise ValueError(
            "`images` must have rank 2, 3 or 4: (H, W), (H, W, C), (N, H, W) "
            f"or (N, H, W, C). Received: images.shape={shape}"
        )
    if batched is None:
        if rank == 3:
            batched = shape[-1] not in (1, 3, 4)
        else:
            batched = rank == 4
    allowed = (3, 4) if batched else (2, 3)
    if rank not in allowed:
        kind = "(N, H, W) or (N, H, W, C)" if batched else "(H, W) or (H, W, C)"
        raise ValueError(
            f"`images` must have rank {allowed[0]} or {allowed[1]}, i.e. "
            f"{kind} (batched={batched}). Received: images.shape={shape}"
        )
    if batched:
        x4 = x if rank == 4 else x[..., None]
    else:
        x4 = (x if rank == 3 else x[..., None])[None]
    if min(x4.shape[1:]) == 0:
        raise ValueError(
            "`images` must have non-empty height, width and channels. "
            f"Received: images.shape={shape}"
        )
    if x4.shape[-1] not in (1, 3, 4):
        hint = ""
        if x4.shape[1] in (1, 3, 4):
            hint = (
                " They look channels-first: move the channel axis last, "
                "e.g. `np.moveaxis(images, -3, -1)`."
            )
        raise ValueError(
            "`images` must be channels-last with 1, 3 or 4 channels, "
            f"(N, H, W, C) or (H, W, C).{hint} Received: images.shape={shape}"
        )
    if dtype != np.uint8 and x4.size:
        if not np.all(np.isfinite(x4)):
            raise ValueError(
                "Float `images` must be finite, in [0, 1]. "
                "Received: images with NaN or infinite values"
            )
        lo, hi = float(x4.min()), float(x4.max())
        if lo < -FLOAT_TOLERANCE or hi > 1.0 + FLOAT_TOLERANCE:
            raise ValueError(
                "Float `images` must be in [0, 1] (uint8 images in "
                "[0, 255] must have dtype uint8). "
                f"Received: images with values in [{lo:g}, {hi:g}]"
            )
    return x4, shape


def _map_chunks(x4, fn, shape):
    """Applies fn (float64 NHWC in [0, 1] -> float64) chunk by chunk.

    Returns the result in x4's dtype, clipped (uint8 rounded), reshaped to
    `shape`.
    """
    out = np.empty(x4.shape, dtype=x4.dtype)
    for start in range(0, x4.shape[0], _CHUNK):
        chunk = x4[start : start + _CHUNK].astype(np.float64)
        if x4.dtype == np.uint8:
            chunk /= 255.0
        else:
            np.clip(chunk, 0.0, 1.0, out=chunk)
        y = np.clip(fn(chunk), 0.0, 1.0)
        if x4.dtype == np.uint8:
            y = np.rint(y * 255.0)
        out[start : start + _CHUNK] = y
    return out.reshape(shape)


def _rng(seed, name, severity):
    key = zlib.crc32(name.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([seed, key, severity]))


# ---------------------------------------------------------------------------
# Building blocks (all on float64 NHWC arrays).
# ---------------------------------------------------------------------------


def _reflect_index(n, pad):
    """Indices of a length-n axis padded by `pad` on each side (a b c | c b a).

    Works for any `pad`, also larger than `n` (the pattern repeats).
    """
    j = np.arange(-pad, n + pad) % (2 * n)
    return np.where(j >= n, 2 * n - 1 - j, j)


def _conv_axis(x, kernel, axis):
    """Correlates axis `axis` of x with a 1-D odd-length kernel, reflect pad."""
    r = len(kernel) // 2
    n = x.shape[axis]
    xp = np.take(x, _reflect_index(n, r), axis=axis)
    out = np.zeros_like(x)
    for k, w in enumerate(kernel):
        sl = [slice(None)] * x.ndim
        sl[axis] = slice(k, k + n)
        out += w * xp[tuple(sl)]
    return out


def _conv2d(x, kernel):
    """Correlates height and width of NHWC x with a 2-D odd kernel."""
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    h, w = x.shape[1], x.shape[2]
    xp = x[:, _reflect_index(h, ry)][:, :, _reflect_index(w, rx)]
    out = np.zeros_like(x)
    for dy in range(kernel.shape[0]):
        for dx in range(kernel.shape[1]):
            if kernel[dy, dx] != 0.0:
                out += kernel[dy, dx] * xp[:, dy : dy + h, dx : dx + w]
    return out


def gaussian_kernel(sigma):
    """Normalised 1-D Gaussian kernel of radius ceil(3 sigma) (at least 1)."""
    r = max(1, int(np.ceil(3.0 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def disk_kernel(radius, subsamples=16):
    """Normalised anti-aliased disk: the covered fraction of each pixel."""
    r = int(np.ceil(radius))
    offsets = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    t = np.arange(-r, r + 1, dtype=np.float64)
    fine = (t[:, None] + offsets[None, :]).ravel()
    inside = (fine[:, None] ** 2 + fine[None, :] ** 2) <= radius**2
    n = 2 * r + 1
    k = inside.reshape(n, subsamples, n, subsamples).mean(axis=(1, 3))
    return k / k.sum()


def _box_downsample_matrix(n, m):
    """(m, n) matrix averaging a length-n axis into m equal cells."""
    edges = np.arange(m + 1) * (n / m)
    lo = np.maximum(edges[:-1, None], np.arange(n)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(n)[None, :] + 1)
    a = np.clip(hi - lo, 0.0, None)
    return a / a.sum(axis=1, keepdims=True)


def _pixelate(x, factor):
    n, h, w, c = x.shape
    mh = max(1, int(round(h * factor)))
    mw = max(1, int(round(w * factor)))
    small = np.einsum("ih,nhwc->niwc", _box_downsample_matrix(h, mh), x)
    small = np.einsum("jw,niwc->nijc", _box_downsample_matrix(w, mw), small)
    rows = np.minimum(((np.arange(h) + 0.5) * mh / h).astype(int), mh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * mw / w).astype(int), mw - 1)
    return small[:, rows][:, :, cols]


def jpeg_quantisation_table(quality):
    """The JPEG luminance table scaled by `quality` (1..100), libjpeg style."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    table = np.floor((JPEG_LUMINANCE_TABLE * scale + 50) / 100)
    return np.clip(table, 1, 255)


def _jpeg_like(x, quality):
    n, h, w, c = x.shape
    q = jpeg_quantisation_table(quality)
    ph, pw = -h % 8, -w % 8
    v = np.pad(
        x * 255.0 - 128.0, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge"
    )
    bh, bw = (h + ph) // 8, (w + pw) // 8
    # (n, bh, 8, bw, 8, c) -> blocks indexed [n, by, bx, c, i, j]
    blocks = v.reshape(n, bh, 8, bw, 8, c).transpose(0, 1, 3, 5, 2, 4)
    coef = _DCT8 @ blocks @ _DCT8.T
    coef = np.round(coef / q) * q
    blocks = _DCT8.T @ coef @ _DCT8
    v = blocks.transpose(0, 1, 4, 2, 5, 3).reshape(n, h + ph, w + pw, c)
    return (v[:, :h, :w] + 128.0) / 255.0


def _apply(x, name, p, rng):
    """Applies corruption `name` with parameter `p` to float64 NHWC x."""
    if name == "gaussian_noise":
        return x + rng.normal(0.0, p, size=x.shape)
    if name == "shot_noise":
        return rng.poisson(x * p) / p
    if name == "impulse_noise":
        u = rng.random(size=x.shape)
        y = x.copy()
        y[u < p / 2] = 0.0
        y[(u >= p / 2) & (u < p)] = 1.0
        return y
    if name == "gaussian_blur":
        k = gaussian_kernel(p)
        return _conv_axis(_conv_axis(x, k, 1), k, 2)
    if name == "defocus_blur":
        return _conv2d(x, disk_kernel(p))
    if name == "contrast":
        m = x.mean(axis=(1, 2, 3), keepdims=True)
        return (x - m) * p + m
    if name == "brightness":
        return x + p
    if name == "pixelate":
        return _pixelate(x, p)
    if name == "jpeg_compression":
        return _jpeg_like(x, p)
    raise AssertionError(name)  # unreachable: names are validated first


# ---------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------


def corrupt(images, name, severity, seed=0, *, batched=None):
    """Returns a corrupted copy of `images`.

    Args:
        images: one image, `(H, W)` or `(H, W, C)`, or a batch, `(N, H, W)`
            or `(N, H, W, C)`; uint8 in [0, 255] or float in [0, 1].
        name: one of `CORRUPTIONS`.
        severity: int in 1..5; see the table in the module docstring.
        seed: non-negative int. The random stream is seeded from
            `(seed, name, severity)`.
        batched: whether the first axis is the batch axis; `None` guesses
            for rank-3 input (see the module docstring).

    Returns:
        An array of the same shape and dtype, clipped to the valid range
        (uint8 results are rounded).

    Raises:
        ValueError: for an unknown `name`, a `severity` that is not an int in
            1..5, a bad `seed`, or `images` of the wrong rank or dtype, or
            float `images` outside [0, 1].
    """
    _check_name(name)
    severity = _check_severity(severity)
    seed = _check_seed(seed)
    x4, shape = _validate_images(images, batched)
    p = SEVERITY_PARAMS[name][severity - 1]
    rng = _rng(seed, name, severity)
    return _map_chunks(x4, lambda x: _apply(x, name, p, rng), shape)


def jpeg_like(images, quality, *, batched=None):
    """The JPEG-like round trip of `jpeg_compression` at any quality 1..100.

    Same input conventions and output as `corrupt`. Quality 100 quantises
    every DCT coefficient with step 1 (on the 0..255 scale).
    """
    if (
        isinstance(quality, (bool, np.bool_))
        or not isinstance(quality, (int, np.integer))
        or not 1 <= quality <= 100
    ):
        raise ValueError(
            f"`quality` must be an int in 1..100. Received: quality={quality!r}"
        )
    x4, shape = _validate_images(images, batched)
    return _map_chunks(x4, lambda x: _jpeg_like(x, quality), shape)


def corrupt_dataset(
    images, names=None, severities=SEVERITIES, seed=0, *, batched=None
):
    """Yields `(name, severity, corrupted_images)` for every requested pair.

    Arguments are validated before the first item is produced. Use
    `{(n, s): x for n, s, x in corrupt_dataset(...)}` for a dict.

    Args:
        images: as for `corrupt`.
        names: a name or a sequence of names; `None` means `CORRUPTIONS`.
        severities: an int or a sequence of ints in 1..5.
        seed: as for `corrupt`; each pair gets the same stream as
            `corrupt(images, name, severity, seed)`.
        batched: as for `corrupt`.

    Returns:
        A generator of `(name, severity, corrupted array)` tuples, names in
        the outer loop.
    """
    if names is None:
        names = CORRUPTIONS
    elif isinstance(names, str):
        names = (names,)
    names = tuple(names)
    for name in names:
        _check_name(name)
    if isinstance(severities, (int, np.integer)) and not isinstance(
        severities, (bool, np.bool_)
    ):
        severities = (severities,)
    severities = tuple(_check_severity(s) for s in severities)
    seed = _check_seed(seed)
    _validate_images(images, batched)  # now, not at the first next()

    def generate():
        for name in names:
            for severity in severities:
                yield (
                    name,
                    severity,
                    corrupt(images, name, severity, seed, batched=batched),
                )

    return generate()
