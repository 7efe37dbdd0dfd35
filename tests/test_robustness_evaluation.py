import numpy as np
import pytest

from keras_groupnl.robustness import CORRUPTIONS
from keras_groupnl.robustness import corrupt
from keras_groupnl.robustness import corruption_accuracy


def _data():
    rng = np.random.default_rng(0)
    # Class 0: dark images, class 1: bright images.
    labels = np.arange(40) % 2
    base = np.where(labels[:, None, None, None] == 1, 170, 60)
    images = np.clip(base + rng.integers(-20, 20, (40, 12, 12, 1)), 0, 255)
    return images.astype("uint8"), labels


def _brightness_classifier(threshold):
    def predict(x):
        bright = x.reshape(len(x), -1).mean(axis=1) > threshold
        return np.stack([~bright, bright], axis=1).astype("float32")

    return predict


def test_structure_and_clean_accuracy():
    images, labels = _data()
    calls = []
    results = corruption_accuracy(
        {"a": _brightness_classifier(115), "b": _brightness_classifier(250)},
        images,
        labels,
        names=["gaussian_noise", "brightness"],
        severities=(1, 5),
        progress=lambda: calls.append(1),
    )
    assert set(results) == {"a", "b"}
    assert results["a"]["clean"] == 1.0
    assert results["b"]["clean"] == 0.5  # always predicts "dark"
    assert set(results["a"]["corrupted"]) == {"gaussian_noise", "brightness"}
    assert set(results["a"]["corrupted"]["brightness"]) == {1, 5}
    assert len(calls) == 4
    # Brightness +0.5 makes every image "bright": accuracy falls to 0.5.
    assert results["a"]["corrupted"]["brightness"][5] == 0.5
    per = results["a"]["per_corruption"]
    assert per["brightness"] == pytest.approx(
        np.mean(list(results["a"]["corrupted"]["brightness"].values()))
    )
    assert results["a"]["mean_corrupted"] == pytest.approx(
        np.mean(list(per.values()))
    )


def test_models_see_the_same_corrupted_images():
    images, labels = _data()
    seen = {"a": [], "b": []}

    def recorder(key):
        def predict(x):
            seen[key].append(x.copy())
            return np.zeros((len(x), 2), "float32")

        return predict

    corruption_accuracy(
        {"a": recorder("a"), "b": recorder("b")},
        images,
        labels,
        names=["shot_noise"],
        severities=(3,),
        seed=7,
        preprocess=lambda x: x.astype("float32") / 255.0,
    )
    assert len(seen["a"]) == 2  # clean + one corrupted batch
    np.testing.assert_array_equal(seen["a"][1], seen["b"][1])
    expected = corrupt(images, "shot_noise", 3, seed=7) / 255.0
    np.testing.assert_allclose(seen["a"][1], expected.astype("float32"))


def test_defaults_cover_every_corruption():
    images, labels = _data()
    results = corruption_accuracy(
        {"a": _brightness_classifier(115)},
        images[:4],
        labels[:4],
        severities=(1,),
    )
    assert tuple(results["a"]["corrupted"]) == CORRUPTIONS


def test_bad_arguments():
    images, labels = _data()
    with pytest.raises(ValueError, match="Received: labels with 3 entries"):
        corruption_accuracy(
            {"a": _brightness_classifier(1)}, images, labels[:3]
        )
    with pytest.raises(ValueError, match="Received: predict_fns"):
        corruption_accuracy({}, images, labels)
