"""PNG plots with matplotlib (the ``plot`` extra): learning curves, confusion matrices, a sweep's history.

    plot_runs(["runs/mnist_cnn", "runs/mnist_mlp"], "curves.png", metric="accuracy", by="epoch")
    plot_history(trials, "history.png", objective="val_accuracy", direction="maximize")

Curves come from metrics.jsonl: the train split (every ``train.log_every`` steps,
or the epoch means with ``by="epoch"``) as solid lines, the validation split as
dashed ones with markers, one panel per metric, runs overlaid in one colour each.
An evaluated classifier (eval.json with a confusion matrix) adds its heat map.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError, require_extra
from .runs import find_run, read_metrics


def _pyplot():
    require_extra("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def curves(run_dir: Path, by: str = "step") -> dict[str, dict[str, tuple[list, list]]]:
    """``{metric: {"train" | "val": (x, y)}}`` from a run's metrics.jsonl; x is the step, or the epoch (1-based)."""
    if by not in ("step", "epoch"):
        raise UserError(f"--by {by}: give step or epoch")
    train_split = "train" if by == "step" else "train_epoch"
    out: dict[str, dict[str, tuple[list, list]]] = {}
    for rec in read_metrics(run_dir / "metrics.jsonl"):
        split = {train_split: "train", "val": "val"}.get(rec.get("split"))
        if split is None or rec.get("name") == "lr":
            continue
        name = rec["name"].removeprefix("val_")
        xs, ys = out.setdefault(name, {}).setdefault(split, ([], []))
        xs.append(rec["step"] if by == "step" else rec["epoch"] + 1)
        ys.append(rec["value"])
    return out


def plot_runs(runs: list[Path | str], out: Path | str, metric: str | None = None, by: str = "step") -> Path:
    """Learning curves of ``runs`` overlaid, one panel per metric, plus each evaluated classifier's confusion matrix."""
    plt = _pyplot()
    dirs = [find_run(r) for r in runs]
    data = {d: curves(d, by) for d in dirs}
    metrics = list(dict.fromkeys(m for c in data.values() for m in c))
    if metric is not None:
        if metric.removeprefix("val_") not in metrics:
            raise UserError(f"--metric {metric}: not logged by these runs (they log: {', '.join(metrics) or 'nothing'})")
        metrics = [metric.removeprefix("val_")]
    if not metrics:
        raise UserError(f"{', '.join(map(str, dirs))}: no metrics logged yet")
    matrices = [(d, m) for d in dirs if (m := _confusion(d)) is not None]
    cols = max(len(metrics), len(matrices), 1)
    rows = 1 + (len(matrices) > 0)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    labels = _labels(dirs)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes[0], metrics):
        for i, d in enumerate(dirs):
            colour = colours[i % len(colours)]
            for split, style in (("train", {"linestyle": "-", "alpha": 0.8}),
                                 ("val", {"linestyle": "--", "marker": "o", "markersize": 3})):
                if split in data[d].get(name, {}):
                    xs, ys = data[d][name][split]
                    ax.plot(xs, ys, color=colour, label=f"{labels[d]} {split}", **style)
        ax.set_title(name)
        ax.set_xlabel(by)
        if name.endswith("loss") and all(v > 0 for d in dirs for _, ys in data[d].get(name, {}).values() for v in ys):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[0][len(metrics):]:
        ax.axis("off")
    if matrices:
        for ax, (d, cm) in zip(axes[1], matrices):
            confusion_heatmap(ax, cm, f"{labels[d]}: test confusion matrix")
        for ax in axes[1][len(matrices):]:
            ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _labels(dirs: list[Path]) -> dict[Path, str]:
    """Short legend names: the run name, with the stamp where two runs share a name."""
    names = [d.parent.name for d in dirs]
    return {d: n if names.count(n) == 1 else f"{n}/{d.name}" for d, n in zip(dirs, names)}


def _confusion(run_dir: Path) -> np.ndarray | None:
    try:
        cm = json.loads((run_dir / "eval.json").read_text()).get("confusion_matrix")
    except (OSError, ValueError, AttributeError):
        return None
    return np.asarray(cm, dtype=np.int64) if cm else None


def confusion_heatmap(ax, cm: np.ndarray, title: str) -> None:
    """Colour by the share of each true class (row), the counts written in each cell."""
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    k = len(cm)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7 if k <= 10 else 5,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)


def default_output(runs: list[Path | str]) -> Path:
    """One run: RUN/curves.png; several: curves.png here."""
    return find_run(runs[0]) / "curves.png" if len(runs) == 1 else Path("curves.png")


def plot_history(trials: list[dict[str, Any]], out: Path | str, objective: str, direction: str) -> Path:
    """A sweep's optimization history: each finished trial's value, pruned trials' last value, the best so far."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    best, xs, bests = None, [], []
    for kind, colour in (("complete", "C0"), ("pruned", "C7")):
        pts = [(t["number"], t["value"]) for t in trials if t["state"] == kind and t["value"] is not None]
        if pts:
            ax.scatter(*zip(*pts), color=colour, s=18, zorder=3,
                       label="pruned (at its last epoch)" if kind == "pruned" else kind)
    for t in sorted(trials, key=lambda t: t["number"]):
        if t["state"] == "complete" and t["value"] is not None:
            better = best is None or (t["value"] > best if direction == "maximize" else t["value"] < best)
            best = t["value"] if better else best
            xs.append(t["number"])
            bests.append(best)
    if xs:
        ax.step(xs, bests, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(f"optimization history ({direction})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
