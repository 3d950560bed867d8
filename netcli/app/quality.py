"""Sample quality of a generative run, judged by a trained classifier run (`netcli eval RUN --classifier CLF`).

- confident_share: the share of samples the classifier assigns some class with probability >= 0.9
- class_<k>_share: the share of samples whose most likely class is k (a collapsed model misses classes)
- frechet_distance: between Gaussians fitted to the classifier's penultimate features (the input of
  its last dense layer) of the samples and of the real test images, as FID does with Inception features:
  |mu_s - mu_r|^2 + tr(C_s + C_r - 2 (C_s C_r)^(1/2))
- frechet_distance_real: the same for n real training images, the floor to compare against
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UserError
from ..models.base import require
from ..registry import DATASETS
from ..runs import write_json
from .evaluate import load_evaluated, load_run

CONFIDENCE = 0.9
BATCH = 500


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, F) and b (M, F)."""
    from scipy import linalg  # imported when needed: scipy is slow to import

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            root = linalg.sqrtm(ca @ cb)
        except linalg.LinAlgWarning:  # singular (a feature that is always 0, fewer samples than features)
            root = None
    if root is None or not np.isfinite(root).all():  # nudge both covariances, as pytorch-fid does,
        eps = 1e-6 * np.eye(len(ca))                   # and measure between the nudged Gaussians
        ca, cb = ca + eps, cb + eps
        root = linalg.sqrtm(ca @ cb)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(ca) + np.trace(cb) - 2 * np.trace(root.real))


def features_and_probs(classifier, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's features (N, F) (the ``features`` capability) and class probabilities (N, K), in batches."""
    from scipy import special

    feats, probs = [], []
    for i in range(0, len(x), BATCH):
        f, logits = classifier.features(x[i:i + BATCH])
        feats.append(np.asarray(f, np.float64))
        probs.append(special.softmax(np.asarray(logits, np.float64), axis=-1))
    return np.concatenate(feats), np.concatenate(probs)


def classifier_input(images: np.ndarray, clf) -> np.ndarray:
    """Samples in [0, 1] -> the layout and normalisation the classifier was trained on."""
    shape = clf.splits.input_shape
    if images[0].size != np.prod(shape):
        raise UserError(f"samples of shape {images.shape[1:]} do not fit the classifier's inputs {shape}")
    x = images.reshape(len(images), *shape).astype(np.float32)
    if getattr(clf.cfg.data, "normalize", "none") == "standard":
        dataset = DATASETS.get(clf.cfg.data.dataset)
        x = (x - np.float32(dataset.MEAN)) / np.float32(dataset.STD)
    return x


def sample_quality(run: Path | str, classifier_run: Path | str, n: int = 1000, seed: int = 0,
                   steps: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Generate ``n`` samples from ``run`` and score them with ``classifier_run``; writes quality.json."""
    run_dir, exp, evaluated = load_evaluated(run)
    clf_dir, clf = load_run(classifier_run)
    require(clf.model, "features", f"--classifier {clf_dir}")
    require(exp.model, "sample", f"{run_dir}: scoring samples")
    steps = exp.model.sample_steps(steps)
    sampler = exp.model.describe_sampler(steps)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    samples = exp.model.sample(n, rng, steps=steps, progress=progress)
    sampling_s = time.perf_counter() - start
    feats, probs = features_and_probs(clf.model, classifier_input(samples, clf))
    real_x = clf.splits.test_x if clf.splits.test_x is not None else clf.splits.val_x
    real, _ = features_and_probs(clf.model, real_x)
    # the real floor's images come from a generator of their own: the same set whatever the sampler drew
    pick = np.random.default_rng(seed).choice(len(clf.splits.train_x), min(n, len(clf.splits.train_x)), replace=False)
    train_x = clf.splits.train_x[pick]
    reference, _ = features_and_probs(clf.model, train_x)
    share = np.bincount(probs.argmax(1), minlength=probs.shape[1]) / n
    metrics = {
        "samples": n,
        "confident_share": float(np.mean(probs.max(1) >= CONFIDENCE)),
        "min_class_share": float(share.min()),
        **{f"class_{k}_share": float(s) for k, s in enumerate(share)},
        "frechet_distance": frechet_distance(feats, real),
        "frechet_distance_real": frechet_distance(reference, real),
    }
    result = {"evaluated": evaluated, "classifier": str(clf_dir), "seed": seed, "sampler": sampler, "sampling_s": round(sampling_s, 1),
              "metrics": metrics}
    write_json(run_dir / "quality.json", result)
    return result
