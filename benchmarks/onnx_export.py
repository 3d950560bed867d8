"""ONNX export per run: file size, agreement with netcli on the run's test split, onnxruntime vs netcli time.

    python benchmarks/onnx_export.py /work/retrain/mnist_cnn /work/retrain/mnist_mlp [--threads 2] [--batch 256]

For each run (a run directory or runs/<name>: its newest run; read only, the
export goes to a temporary folder): `netcli.onnx.export_onnx`, then the whole
test split of the run's data set, as the model takes it (for MNIST runs the real
10,000 test images, scaled as in training), through netcli's eval forward
(`load_run(run).output`) and through onnxruntime (CPU provider), both in batches
of --batch on --threads threads (netcli's engine threads; onnxruntime's
intra-op threads, inter-op 1); a data set without a test split (a CSV
without test_path) uses its validation split. Reported: the exported size, the largest
|onnxruntime - netcli| over every output entry (logits or values), how many
predicted classes differ, and the best of --repeats timings of the whole split.
A run with a layer that has no converter is reported as such. Prints a
Markdown table.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netcli import backend as B  # noqa: E402
from netcli.app.evaluate import load_run as load_experiment  # noqa: E402
from netcli.onnx import ExportError, export_onnx  # noqa: E402
from netcli.trained import load_run  # noqa: E402


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1e3:.3g} ms"


def measure(run: str, threads: int, batch: int, repeats: int, folder: Path) -> str:
    import onnxruntime as ort

    model = load_run(run)
    name = model.config.name
    try:
        path = export_onnx(run, folder / f"{name}.onnx")
    except ExportError as e:
        return f"| {name} | not exportable: {str(e).split(';')[0]} | | | | | |"
    splits = load_experiment(run)[1].splits  # as the model takes them
    split, x = ("test", splits.test_x) if splits.test_x is not None else ("val", splits.val_x)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = x.astype(np.float32) if x.dtype.kind == "f" else x
    first = sess.get_outputs()[0].name

    def netcli_out():
        model.batch_size = batch
        return model.output(x)

    def ort_out():
        return np.concatenate([sess.run([first], {"input": feed[i:i + batch]})[0] for i in range(0, len(x), batch)])

    want, got = netcli_out(), ort_out()
    diff = float(np.abs(got - want.astype(np.float32)).max())
    classes = f"{int((got.argmax(-1) != want.argmax(-1)).sum())}" if model.is_classifier else "-"
    t_netcli, t_ort = best_time(netcli_out, repeats), best_time(ort_out, repeats)
    return (f"| {name} | {path.stat().st_size / 1024:,.0f} KiB | {len(x):,} {split} | {diff:.2e} (of {float(np.abs(want).max()):.3g}) | {classes} | "
            f"{ms(t_netcli)} | {ms(t_ort)} ({t_netcli / t_ort:.2f}x) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    B.set_threads(args.threads)
    print(f"threads {args.threads}, batch {args.batch}, best of {args.repeats}, "
          f"load average before {os.getloadavg()[0]:.1f}\n")
    print("| run | ONNX size | samples | max abs diff (of max abs output) | classes differing | netcli | onnxruntime (speed-up) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            print(measure(run, args.threads, args.batch, args.repeats, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
