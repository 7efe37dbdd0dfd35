"""Tests of the ImageNet-C style corruptions (NumPy only, backend-agnostic)."""

import re

import numpy as np
import pytest

from keras_groupnl.robustness import CORRUPTIONS
from keras_groupnl.robustness import SEVERITY_PARAMS
from keras_groupnl.robustness import corrupt
from keras_groupnl.robustness import corrupt_dataset
from keras_groupnl.robustness import corruption_names
from keras_groupnl.robustness import corruptions as corruptions_module
from keras_groupnl.robustness import jpeg_like

NOISE = ("gaussian_noise", "shot_noise", "impulse_noise")
DETERMINISTIC = tuple(n for n in CORRUPTIONS if n not in NOISE)
SEVERITY_LIST = (1, 2, 3, 4, 5)


def structured(h, w, channels=None):
    """A small batch of gradients, checkerboards, a sinusoid and a disk."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy /= max(h - 1, 1)
    xx /= max(w - 1, 1)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    images = [
        xx,
        yy,
        (xx + yy) / 2,
        ((rows // 4 + cols // 4) % 2).astype(np.float64),
        ((rows // 2 + cols // 2) % 2) * 0.8 + 0.1,
        0.5 + 0.4 * np.sin(6 * np.pi * xx) * np.cos(4 * np.pi * yy),
        (((xx - 0.5) ** 2 + (yy - 0.5) ** 2) < 0.1).astype(np.float64),
    ]
    batch = np.stack(images)
    if channels:
        batch = np.stack([batch, batch[:, ::-1], 1.0 - batch][:channels], -1)
    return batch


def to_uint8(x):
    return np.rint(x * 255).astype(np.uint8)


def mad(a, b):
    """Mean absolute difference on the [0, 1] scale."""
    scale = 255.0 if a.dtype == np.uint8 else 1.0
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / scale


# Inputs of every supported kind: (images, description).
INPUTS = [
    (to_uint8(structured(32, 32, 3)), "uint8 (N, 32, 32, 3)"),
    (structured(28, 28).astype(np.float32), "float32 (N, 28, 28)"),
    (structured(13, 21, 3)[2], "float64 (13, 21, 3)"),
    (to_uint8(structured(28, 28)[5]), "uint8 (28, 28)"),
    (structured(9, 10, 1).astype(np.float16), "float16 (N, 9, 10, 1)"),
]


# ---------------------------------------------------------------------------
# Names and the documented table.
# ---------------------------------------------------------------------------


def test_names_and_severity_table():
    required = {
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "gaussian_blur",
        "defocus_blur",
        "contrast",
        "brightness",
        "pixelate",
        "jpeg_compression",
    }
    assert isinstance(CORRUPTIONS, tuple)
    assert required <= set(CORRUPTIONS)
    assert len(set(CORRUPTIONS)) == len(CORRUPTIONS)
    assert corruption_names() == list(CORRUPTIONS)
    assert set(SEVERITY_PARAMS) == set(CORRUPTIONS)
    doc = corruptions_module.__doc__
    for name, params in SEVERITY_PARAMS.items():
        assert len(params) == 5
        # The docstring table lists the same numbers as the code uses.
        row = ", ".join(str(p) for p in params)
        assert re.search(rf"^{name}\s.*\s{re.escape(row)}$", doc, re.M), name


# ---------------------------------------------------------------------------
# Shape, dtype and range.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("severity", SEVERITY_LIST)
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_shape_dtype_range(name, severity):
    for images, what in INPUTS:
        before = images.copy()
        out = corrupt(images, name, severity, seed=3)
        assert out.shape == images.shape, what
        assert out.dtype == images.dtype, what
        assert not np.shares_memory(out, images), what
        np.testing.assert_array_equal(images, before, err_msg=what)
        if out.dtype != np.uint8:
            assert np.all(np.isfinite(out)), what
            assert out.min() >= 0.0 and out.max() <= 1.0, what


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_uint8_matches_float(name):
    u = to_uint8(structured(16, 20, 3))
    f = u.astype(np.float64) / 255.0
    out_u = corrupt(u, name, 3, seed=5).astype(int)
    out_f = np.rint(corrupt(f, name, 3, seed=5) * 255.0).astype(int)
    assert np.abs(out_u - out_f).max() <= 1


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_single_image_equals_batch_of_one(name):
    x = structured(12, 12, 3)
    single = corrupt(x[0], name, 4, seed=1)
    batch = corrupt(x[:1], name, 4, seed=1)
    np.testing.assert_array_equal(single, batch[0])
    gray = structured(12, 12)[0]
    np.testing.assert_array_equal(
        corrupt(gray, name, 4, seed=1),
        corrupt(gray[..., None], name, 4, seed=1)[..., 0],
    )


def test_rank3_interpretation_and_batched_flag():
    x = structured(10, 12)  # (7, 10, 12): a batch, last axis is not 1/3/4
    batch = corrupt(x, "pixelate", 5)
    np.testing.assert_array_equal(batch[2], corrupt(x[2], "pixelate", 5))
    # (10, 12, 3) is read as one RGB image; batched=True reads it as 10
    # grayscale 12x3 images instead, which pixelates differently.
    rgb = structured(10, 12, 3)[0]
    as_image = corrupt(rgb, "pixelate", 5)
    as_batch = corrupt(rgb, "pixelate", 5, batched=True)
    np.testing.assert_array_equal(
        as_image, corrupt(rgb, "pixelate", 5, batched=False)
    )
    assert not np.array_equal(as_image, as_batch)
    np.testing.assert_array_equal(as_batch[4], corrupt(rgb[4], "pixelate", 5))


def test_channels_first_images_are_refused():
    """(N, 3, 32, 32) is not 32-channel images: a clear error, with a hint."""
    images = np.zeros((2, 3, 32, 32), "uint8")
    with pytest.raises(ValueError, match=r"look channels-first.*moveaxis"):
        corrupt(images, "gaussian_noise", 1)
    with pytest.raises(ValueError, match=r"1, 3 or 4 channels"):
        corrupt(np.zeros((2, 8, 8, 5), "uint8"), "gaussian_noise", 1)
    moved = corrupt(np.moveaxis(images, 1, -1), "gaussian_noise", 1)
    assert moved.shape == (2, 32, 32, 3)


def test_importing_robustness_does_not_import_tensorflow():
    """The corruptions are NumPy: importing them pulls no ML framework."""
    import subprocess
    import sys

    code = (
        "import sys, keras_groupnl.robustness; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_empty_batch():
    x = np.zeros((0, 8, 8, 3), np.uint8)
    out = corrupt(x, "gaussian_noise", 2)
    assert out.shape == x.shape and out.dtype == np.uint8


def test_chunked_batch_matches_small_batch():
    x = to_uint8(np.tile(structured(8, 8), (90, 1, 1)))  # 630 > one chunk
    for name in DETERMINISTIC:
        np.testing.assert_array_equal(
            corrupt(x, name, 3)[600:610], corrupt(x[600:610], name, 3)
        )


# ---------------------------------------------------------------------------
# Randomness.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_seed_reproducibility(name):
    x = structured(16, 16, 3)
    a = corrupt(x, name, 3, seed=7)
    np.testing.assert_array_equal(a, corrupt(x, name, 3, seed=7))
    other = corrupt(x, name, 3, seed=8)
    if name in NOISE:
        assert not np.array_equal(a, other)
        assert mad(a, other) > 0.01
    else:
        np.testing.assert_array_equal(a, other)


def test_results_do_not_depend_on_call_order():
    x = structured(16, 16)
    pairs = [(n, s) for n in NOISE for s in (1, 5)]
    forward = {p: corrupt(x, *p, seed=11) for p in pairs}
    backward = {p: corrupt(x, *p, seed=11) for p in reversed(pairs)}
    for p in pairs:
        np.testing.assert_array_equal(forward[p], backward[p])
    # Each severity has its own stream, not a rescaled copy of one draw.
    flat = np.full((2, 16, 16), 0.5)
    std = SEVERITY_PARAMS["gaussian_noise"]
    z1 = (corrupt(flat, "gaussian_noise", 1, seed=11) - 0.5) / std[0]
    z2 = (corrupt(flat, "gaussian_noise", 2, seed=11) - 0.5) / std[1]
    assert abs(np.corrcoef(z1.ravel(), z2.ravel())[0, 1]) < 0.2
    # Global NumPy random state plays no part.
    np.random.seed(0)
    a = corrupt(x, "shot_noise", 2, seed=11)
    np.random.seed(1)
    np.testing.assert_array_equal(a, corrupt(x, "shot_noise", 2, seed=11))


def test_noise_statistics():
    flat = np.full((4, 64, 64), 0.5)
    for severity, std in enumerate(SEVERITY_PARAMS["gaussian_noise"][:3], 1):
        y = corrupt(flat, "gaussian_noise", severity)
        assert abs((y - 0.5).std() / std - 1) < 0.05
        assert abs((y - 0.5).mean()) < 0.01
    y = corrupt(flat, "shot_noise", 1)
    assert abs(y.mean() - 0.5) < 0.01
    lam = SEVERITY_PARAMS["shot_noise"][0]
    assert abs(y.std() / np.sqrt(0.5 / lam) - 1) < 0.05
    for severity, fraction in enumerate(SEVERITY_PARAMS["impulse_noise"], 1):
        y = corrupt(flat, "impulse_noise", severity)
        changed = y != 0.5
        assert set(np.unique(y[changed])) <= {0.0, 1.0}
        # Binomial counts, within 5 standard deviations.
        n = flat.size
        assert abs(changed.sum() - n * fraction) < 5 * np.sqrt(
            n * fraction * (1 - fraction)
        )
        k = changed.sum()
        assert abs((y == 1.0).sum() - k / 2) < 5 * np.sqrt(k / 4)


# ---------------------------------------------------------------------------
# Damage increases with severity.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "images",
    [
        structured(28, 28),
        to_uint8(structured(32, 32, 3)),
        structured(13, 21, 3),
    ],
    ids=["gray28", "rgb32_uint8", "rgb13x21"],
)
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_damage_increases_with_severity(name, images):
    damage = [mad(corrupt(images, name, s), images) for s in SEVERITY_LIST]
    assert damage[0] > 0
    assert np.all(np.diff(damage) > 0), damage


# ---------------------------------------------------------------------------
# Individual corruptions.
# ---------------------------------------------------------------------------


def _reference_blur(image, kernel_1d):
    """Separable correlation with np.pad(mode="symmetric"), row by row."""
    r = len(kernel_1d) // 2
    p = np.pad(image, r, mode="symmetric")
    rows = np.stack([np.convolve(row, kernel_1d[::-1], "valid") for row in p])
    return np.stack(
        [np.convolve(col, kernel_1d[::-1], "valid") for col in rows.T]
    ).T


def test_gaussian_blur_matches_reference_and_keeps_constant_mean():
    x = structured(14, 17)
    for severity, sigma in enumerate(SEVERITY_PARAMS["gaussian_blur"], 1):
        t = np.arange(-np.ceil(3 * sigma), np.ceil(3 * sigma) + 1)
        k = np.exp(-(t**2) / (2 * sigma**2))
        k /= k.sum()
        y = corrupt(x, "gaussian_blur", severity)
        if len(k) // 2 < 14:  # np.pad symmetric reflects only once
            for i in range(len(x)):
                np.testing.assert_allclose(
                    y[i], _reference_blur(x[i], k), atol=1e-12
                )
        for value in (0.0, 0.3, 1.0):
            const = np.full((2, 11, 9, 3), value)
            out = corrupt(const, "gaussian_blur", severity)
            np.testing.assert_allclose(out, value, atol=1e-12)
            assert abs(out.mean() - value) < 1e-12
        u = np.full((5, 7), 77, np.uint8)  # smaller than the kernel
        np.testing.assert_array_equal(corrupt(u, "gaussian_blur", severity), u)


def test_defocus_kernel_is_a_disk():
    for radius in SEVERITY_PARAMS["defocus_blur"]:
        k = corruptions_module.disk_kernel(radius)
        assert abs(k.sum() - 1) < 1e-12
        np.testing.assert_allclose(k, k.T)
        np.testing.assert_allclose(k, k[::-1, ::-1])
        c = k.shape[0] // 2
        assert k[c, c] == k.max()
        # The covered area is about pi r^2 pixels (anti-aliased disk).
        area = k.sum() / k[c, c]
        assert abs(area / (np.pi * radius**2) - 1) < 0.05
    const = np.full((3, 10, 10), 0.6)
    for severity in SEVERITY_LIST:
        np.testing.assert_allclose(
            corrupt(const, "defocus_blur", severity), 0.6
        )


def test_contrast_and_brightness():
    x = 0.25 + 0.5 * structured(12, 12, 3)  # in [0.25, 0.75]: no clipping
    for severity in SEVERITY_LIST:
        c = SEVERITY_PARAMS["contrast"][severity - 1]
        y = corrupt(x, "contrast", severity)
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), mean.ravel())
        np.testing.assert_allclose(y - mean, c * (x - mean), atol=1e-12)
    low = 0.5 * x[..., :1] - 0.12  # in [0.005, 0.255]: no clipping
    for severity in SEVERITY_LIST:
        delta = SEVERITY_PARAMS["brightness"][severity - 1]
        np.testing.assert_allclose(
            corrupt(low, "brightness", severity), low + delta
        )
    assert corrupt(np.ones((4, 4)), "brightness", 5).max() == 1.0


def test_pixelate_is_blocky_and_keeps_block_means():
    x = structured(16, 16)
    y = corruptions_module._pixelate(x[..., None], 0.25)[..., 0]
    blocks = x.reshape(len(x), 4, 4, 4, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(y, np.repeat(np.repeat(blocks, 4, 1), 4, 2))
    for severity, factor in enumerate(SEVERITY_PARAMS["pixelate"], 1):
        y = corrupt(x, "pixelate", severity)
        distinct_rows = len(np.unique(y[5], axis=0))
        assert distinct_rows <= max(1, round(16 * factor))


def test_jpeg_quality_100_is_close_to_identity():
    u = to_uint8(structured(32, 32, 3))
    out = jpeg_like(u, 100)
    diff = np.abs(out.astype(int) - u.astype(int))
    assert diff.max() <= 2
    assert diff.mean() < 0.1
    f = structured(28, 28)
    assert mad(jpeg_like(f, 100), f) < 1e-3
    np.testing.assert_array_equal(
        corruptions_module.jpeg_quantisation_table(100), np.ones((8, 8))
    )
    np.testing.assert_array_equal(
        corruptions_module.jpeg_quantisation_table(50),
        corruptions_module.JPEG_LUMINANCE_TABLE,
    )


def test_dct_matrix_is_orthonormal_dct_ii():
    d = corruptions_module._DCT8
    np.testing.assert_allclose(d @ d.T, np.eye(8), atol=1e-12)
    # A constant block has only a DC coefficient, equal to 8 * value.
    coef = d @ np.full((8, 8), 3.0) @ d.T
    assert abs(coef[0, 0] - 24.0) < 1e-12
    coef[0, 0] = 0
    assert np.abs(coef).max() < 1e-12


def _blockiness(y):
    """Mean jump across 8x8 block edges over the mean jump inside blocks."""
    y = y.astype(np.float64)
    dx = np.abs(np.diff(y, axis=-1))
    dy = np.abs(np.diff(y, axis=-2))
    ex = np.arange(dx.shape[-1]) % 8 == 7
    ey = np.arange(dy.shape[-2]) % 8 == 7
    edges = dx[..., ex].mean() + dy[..., ey, :].mean()
    inside = dx[..., ~ex].mean() + dy[..., ~ey, :].mean()
    return edges / inside


def test_jpeg_severity_5_is_blockier():
    h = w = 48
    yy, xx = np.mgrid[0:h, 0:w] / (h - 1)
    smooth = 0.5 + 0.27 * np.sin(2 * np.pi * (1.3 * xx + 0.7 * yy)) + 0.05 * xx
    clean = _blockiness(smooth)
    assert abs(clean - 1) < 0.05
    assert abs(_blockiness(jpeg_like(smooth, 100)) - 1) < 0.05
    b = [
        _blockiness(corrupt(smooth, "jpeg_compression", s))
        for s in SEVERITY_LIST
    ]
    assert b[4] > 2.0 and b[4] > b[0] + 1.0
    assert np.all(np.diff(b) > 0), b
    # corrupt() uses jpeg_like at the documented quality.
    quality = SEVERITY_PARAMS["jpeg_compression"][4]
    np.testing.assert_array_equal(
        corrupt(smooth, "jpeg_compression", 5), jpeg_like(smooth, quality)
    )


def test_jpeg_any_size():
    for shape in [(28, 28), (13, 21, 3), (5, 3), (1, 1), (2, 9, 17, 1)]:
        x = np.random.default_rng(0).random(shape)
        out = corrupt(x, "jpeg_compression", 5)
        assert out.shape == x.shape
        assert mad(jpeg_like(x, 100), x) < 2e-3


# ---------------------------------------------------------------------------
# corrupt_dataset.
# ---------------------------------------------------------------------------


def test_corrupt_dataset():
    x = to_uint8(structured(12, 12))
    items = list(corrupt_dataset(x, seed=4))
    assert [(n, s) for n, s, _ in items] == [
        (n, s) for n in CORRUPTIONS for s in SEVERITY_LIST
    ]
    for name, severity, out in items:
        np.testing.assert_array_equal(out, corrupt(x, name, severity, seed=4))
    as_dict = {(n, s): y for n, s, y in corrupt_dataset(x, "contrast", 2)}
    assert list(as_dict) == [("contrast", 2)]
    some = list(corrupt_dataset(x, ["brightness", "shot_noise"], (5, 1)))
    assert [(n, s) for n, s, _ in some] == [
        ("brightness", 5),
        ("brightness", 1),
        ("shot_noise", 5),
        ("shot_noise", 1),
    ]


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------

GOOD = structured(8, 8)

# (function, args, kwargs, message pattern)
BAD_CALLS = [
    (
        corrupt,
        (GOOD, "fog", 1),
        {},
        r"Unknown corruption.*gaussian_noise.*jpeg_compression.*"
        r"Received: name='fog'",
    ),
    (corrupt, (GOOD, None, 1), {}, r"Received: name=None"),
    (corrupt, (GOOD, "Contrast", 1), {}, r"Received: name='Contrast'"),
    (
        corrupt,
        (GOOD, "contrast", 0),
        {},
        r"severity.*1\.\.5.*Received: severity=0",
    ),
    (corrupt, (GOOD, "contrast", 6), {}, r"Received: severity=6"),
    (corrupt, (GOOD, "contrast", 2.0), {}, r"Received: severity=2\.0"),
    (corrupt, (GOOD, "contrast", "3"), {}, r"Received: severity='3'"),
    (corrupt, (GOOD, "contrast", True), {}, r"Received: severity=True"),
    (corrupt, (GOOD, "contrast", None), {}, r"Received: severity=None"),
    (corrupt, (GOOD, "contrast", 1), {"seed": -1}, r"seed.*Received: seed=-1"),
    (corrupt, (GOOD, "contrast", 1), {"seed": 1.5}, r"Received: seed=1\.5"),
    (
        corrupt,
        (np.zeros(8), "contrast", 1),
        {},
        r"rank.*Received: images\.shape=\(8,\)",
    ),
    (
        corrupt,
        (np.zeros((2, 3, 4, 4, 1)), "contrast", 1),
        {},
        r"rank.*Received: images\.shape=\(2, 3, 4, 4, 1\)",
    ),
    (
        corrupt,
        (np.zeros((2, 4, 4, 3)), "contrast", 1),
        {"batched": False},
        r"rank.*Received: images\.shape=\(2, 4, 4, 3\)",
    ),
    (
        corrupt,
        (np.zeros((4, 4)), "contrast", 1),
        {"batched": True},
        r"rank.*Received: images\.shape=\(4, 4\)",
    ),
    (
        corrupt,
        (np.zeros((2, 0, 4)), "contrast", 1),
        {},
        r"non-empty.*Received: images\.shape=\(2, 0, 4\)",
    ),
    (
        corrupt,
        (np.zeros((4, 4), np.int32), "contrast", 1),
        {},
        r"uint8.*float.*Received: images\.dtype=int32",
    ),
    (
        corrupt,
        (np.zeros((4, 4), bool), "contrast", 1),
        {},
        r"Received: images\.dtype=bool",
    ),
    (
        corrupt,
        (GOOD * 255, "contrast", 1),
        {},
        r"\[0, 1\].*Received: images with values in \[0, 255\]",
    ),
    (
        corrupt,
        (GOOD - 0.5, "contrast", 1),
        {},
        r"Received: images with values in \[-0\.5, 0\.5\]",
    ),
    (
        corrupt,
        (np.full((4, 4), np.nan), "contrast", 1),
        {},
        r"Received: images with NaN",
    ),
    (
        corrupt,
        (GOOD, "contrast", 1),
        {"batched": "yes"},
        r"Received: batched='yes'",
    ),
    (jpeg_like, (GOOD, 0), {}, r"quality.*Received: quality=0"),
    (jpeg_like, (GOOD, 101), {}, r"Received: quality=101"),
    (
        corrupt_dataset,
        (GOOD, ["contrast", "snow"]),
        {},
        r"Received: name='snow'",
    ),
    (corrupt_dataset, (GOOD,), {"severities": (1, 7)}, r"Received: severity=7"),
    (corrupt_dataset, (GOOD * 2,), {}, r"Received: images with values in"),
]


@pytest.mark.parametrize(
    "function,args,kwargs,message", BAD_CALLS, ids=range(len(BAD_CALLS))
)
def test_bad_input(function, args, kwargs, message):
    # corrupt_dataset checks its arguments before the first item is asked for.
    with pytest.raises(ValueError, match=message):
        function(*args, **kwargs)


def test_float_tolerance_is_clipped():
    x = np.array([[-1e-4, 0.5], [1.0 + 1e-4, 0.2]])
    out = corrupt(x, "contrast", 1)
    assert out.min() >= 0 and out.max() <= 1
