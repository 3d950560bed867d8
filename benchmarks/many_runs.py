"""1,000 runs: `netcli runs` and the `netcli ui` runs page over a runs directory that large.

    python benchmarks/many_runs.py [--runs 1000] [--repeats 5] [--no-browser]

Trains one tiny real run (a 2-filter CNN on 4x4 synthetic images, a second), evaluates it, and copies its
files (config.yaml, summary.json, metrics.jsonl, eval.json) into --runs run directories under 25 names,
as a long sweep leaves them. Then times, --repeats times each (median and worst):

    list_runs              netcli.runs_table.list_runs over every run (what `netcli runs` reads)
    netcli runs            the command as a child process (its table to a pipe), start-up included
    ui: first read         the UI server's first read of every run (a new RunsAPI: each file parsed)
    ui: read again         the same API's next read (files unchanged: a stat per run)
    ui: page               chromium (Debian's, driven by Playwright: the ui extra and .ci/run have both)
                           opening the runs page until its table holds every run, after the first read

Each measurement checks what it timed first: every run listed, with the copied run's model and status;
the page's rows. The targets are the ones the tests held before they moved here (3 s to list 1,000 runs,
1 s for the page); the script prints them beside the medians and never fails on them: timings depend on
the machine and its load (check `uptime`).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TARGETS = {"list_runs": 3.0, "ui: page": 1.0}  # seconds, for 1,000 runs


def tiny_run(work: Path) -> Path:
    """One real run, trained and evaluated: the run directory."""
    from netcli.app.evaluate import evaluate_run
    from netcli.config import config_from_dict
    from netcli.train import train

    rng = np.random.default_rng(0)
    for name, n in (("train.npz", 48), ("test.npz", 16)):
        y = rng.integers(0, 2, n)
        np.savez(work / name, x=rng.normal(size=(n, 1, 4, 4)).astype(np.float32) + y[:, None, None, None], y=y)
    spec = {"name": "tiny", "seed": 3,
            "data": {"dataset": "npz", "path": str(work / "train.npz"), "test_path": str(work / "test.npz"),
                     "batch_size": 8, "val_fraction": 0.2},
            "model": {"type": "classifier", "layers": [{"type": "conv2d", "filters": 2, "kernel": 3, "padding": 1},
                                                       "relu", "flatten", {"type": "dense", "units": 2}]},
            "optimizer": {"type": "adam", "lr": 0.01}, "train": {"epochs": 3, "log_every": 1}}
    run = train(config_from_dict(spec), work / "src").run_dir
    evaluate_run(run)
    return run


def many(src: Path, root: Path, n: int) -> None:
    for i in range(n):
        d = root / f"exp{i % 25}" / f"20260101-{i:06d}"
        d.mkdir(parents=True)
        for name in ("config.yaml", "summary.json", "metrics.jsonl", "eval.json"):
            shutil.copy(src / name, d / name)


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000, help="run directories to list")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of each measurement")
    ap.add_argument("--no-browser", action="store_true", help="leave out the page in chromium")
    args = ap.parse_args()

    from netcli.runs_table import list_runs
    from netcli.ui.api import RunsAPI

    work = Path(tempfile.mkdtemp(prefix="netcli-many-runs-"))
    try:
        src = tiny_run(work)
        root = work / "runs"
        many(src, root, args.runs)
        rows: list[tuple[str, list[float]]] = []

        recs = list_runs(root)
        assert len(recs) == args.runs and {(r.model, r.status) for r in recs} == {("classifier", "finished")}, recs[:3]
        rows.append(("list_runs", timed(lambda: list_runs(root), args.repeats)))

        cmd = [sys.executable, "-c", "from netcli.cli import main; main()", "runs", str(root)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "COLUMNS": "200"}
        out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, check=True).stdout
        assert out.count('"status": "finished"') == args.runs, out[:300]
        rows.append(("netcli runs", timed(lambda: subprocess.run(cmd, capture_output=True, env=env, check=True),
                                          args.repeats)))

        assert len(RunsAPI(root).runs()["runs"]) == args.runs
        rows.append(("ui: first read", timed(lambda: RunsAPI(root).runs(), args.repeats)))
        api = RunsAPI(root)
        api.runs()
        rows.append(("ui: read again", timed(api.runs, args.repeats)))

        if not args.no_browser:
            rows.append(("ui: page", page_times(root, args.runs, args.repeats)))

        print(f"{args.runs:,} runs, {args.repeats} repeats; load average {os.getloadavg()[0]:.2f} at the end\n")
        print("| measurement | median s | worst s | target s (1,000 runs) |")
        print("| --- | --- | --- | --- |")
        for name, times in rows:
            print(f"| {name} | {statistics.median(times):.3f} | {max(times):.3f} | {TARGETS.get(name, '-')} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def page_times(root: Path, n: int, repeats: int) -> list[float]:
    """Seconds from opening the runs page to its table holding every run, the server's first read done."""
    from playwright import sync_api as playwright

    from netcli.ui import make_server

    server = make_server(root, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    server.api.runs()  # what `netcli ui` has read by the time a user opens the page (it reads at start)
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            times = []
            for _ in range(repeats + 1):  # the first warms the browser's cache of the page's script
                page = browser.new_page()
                t0 = time.perf_counter()
                page.goto(server.url)
                page.wait_for_function(f"document.querySelectorAll('table.runs tbody tr').length === {n}")
                times.append(time.perf_counter() - t0)
                page.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return times[1:]


if __name__ == "__main__":
    main()
