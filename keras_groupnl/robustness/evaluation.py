"""Accuracy of a classifier on corrupted copies of a test set."""

import numpy as np

from keras_groupnl.robustness.corruptions import CORRUPTIONS
from keras_groupnl.robustness.corruptions import SEVERITIES
from keras_groupnl.robustness.corruptions import corrupt


def corruption_accuracy(
    predict_fns,
    images,
    labels,
    names=None,
    severities=SEVERITIES,
    seed=0,
    preprocess=None,
    progress=None,
):
    """Top-1 accuracy of one or more classifiers on corrupted test images.

    Every (corruption, severity) pair is drawn once, with `seed`, and the
    same corrupted images go to every classifier, so the comparison between
    models is paired.

    Args:
        predict_fns: dict `{model_name: fn}` where `fn(x)` returns class
            scores of shape `(N, classes)` for a batch of preprocessed
            images (a Keras model's `predict`, a LiteRT runner, ...).
        images: clean images, uint8 `(N, H, W)` / `(N, H, W, C)` or float in
            [0, 1], as `corrupt` takes them.
        labels: integer class labels, shape `(N,)`.
        names: corruption names; defaults to all of `CORRUPTIONS`.
        severities: severities to evaluate (1 to 5).
        seed: seed of the random corruptions.
        preprocess: optional function applied to the corrupted images
            before prediction (e.g. scaling and adding a channel axis).
        progress: optional callable, called once per (corruption, severity)
            pair with no argument (e.g. a `keras.utils.Progbar` update).

    Returns:
        `{model_name: {"clean": acc, "corrupted": {name: {severity: acc}},
        "per_corruption": {name: mean acc}, "mean_corrupted": acc}}`.
    """
    names = tuple(CORRUPTIONS if names is None else names)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(
            "`labels` must have one entry per image. Received: "
            f"labels with {len(labels)} entries for {len(images)} images"
        )
    if not predict_fns:
        raise ValueError(
            "`predict_fns` must name at least one classifier. "
            f"Received: predict_fns={predict_fns!r}"
        )
    prepare = preprocess or (lambda x: x)

    def accuracy(fn, batch):
        scores = np.asarray(fn(batch))
        return float(np.mean(np.argmax(scores, axis=-1) == labels))

    clean = prepare(images)
    results = {
        key: {"clean": accuracy(fn, clean), "corrupted": {}}
        for key, fn in predict_fns.items()
    }
    for name in names:
        for severity in severities:
            batch = prepare(corrupt(images, name, severity, seed=seed))
            for key, fn in predict_fns.items():
                per_name = results[key]["corrupted"].setdefault(name, {})
                per_name[int(severity)] = accuracy(fn, batch)
            if progress is not None:
                progress()
    for result in results.values():
        result["per_corruption"] = {
            name: float(np.mean(list(by_severity.values())))
            for name, by_severity in result["corrupted"].items()
        }
        result["mean_corrupted"] = float(
            np.mean(list(result["per_corruption"].values()))
        )
    return results
