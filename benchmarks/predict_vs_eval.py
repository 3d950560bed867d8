"""`netcli predict` on the 10,000 real MNIST test images as PNG files against `netcli eval` on the same images.

    python benchmarks/predict_vs_eval.py /work/retrain/mnist_cnn [--repeats 2] [--threads 2]

The test images are written as PNG files (``Image.fromarray(test_x[i]).save``)
into a temporary folder and the run is copied there (eval writes eval.json
into its run; the run given stays as it was). Then, alternating, each as a
whole child process timed from start to exit (imports, loading, decoding
included), with the same OPENBLAS_NUM_THREADS:

    netcli predict RUN png/ --format csv -o pred.csv      # decodes and fits every PNG, then the forward
    netcli eval RUN                                       # the test split from the cached arrays

It checks that predict's classes give eval's confusion matrix, and prints both
times and their ratio (the issue's target: predict within 1.5x of eval).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netcli.data.mnist import MNIST  # noqa: E402
from netcli.runs import find_run  # noqa: E402


def timed(args: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "netcli", *args], check=True, env=env, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    from PIL import Image

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": str(args.threads)}
    arrays = MNIST.arrays()
    test_x, test_y = arrays["test_x"], arrays["test_y"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tmp / "run"
        shutil.copytree(find_run(args.run), run)
        (tmp / "png").mkdir()
        for i, img in enumerate(test_x):
            Image.fromarray(img).save(tmp / "png" / f"{i:05d}.png")
        predict = ["predict", str(run), str(tmp / "png"), "--format", "csv", "-o", str(tmp / "pred.csv")]
        times: dict[str, list[float]] = {"predict": [], "eval": []}
        for _ in range(args.repeats):
            times["predict"].append(timed(predict, env))
            times["eval"].append(timed(["eval", str(run)], env))
        pred = np.array([int(line.split(",")[1]) for line in (tmp / "pred.csv").read_text().splitlines()[1:]])
        cm = np.zeros((10, 10), np.int64)
        np.add.at(cm, (test_y, pred), 1)
        same = cm.tolist() == json.loads((run / "eval.json").read_text())["confusion_matrix"]
    p, e = min(times["predict"]), min(times["eval"])
    print(f"{len(test_x):,} MNIST test images, {args.threads} thread(s), load average before: {load:.1f}")
    print(f"predict (PNG files): {', '.join(f'{t:.1f}' for t in times['predict'])} s; accuracy {np.mean(pred == test_y):.2%}")
    print(f"eval (arrays):       {', '.join(f'{t:.1f}' for t in times['eval'])} s")
    print(f"predict / eval (best of each): {p / e:.2f}; same confusion matrix as eval: {same}")


if __name__ == "__main__":
    main()
