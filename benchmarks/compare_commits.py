"""benchmarks/run.py at two commits, side by side: the same workloads, interleaved, on the same machine.

    python benchmarks/compare_commits.py d9dfcf9 HEAD [--rounds 2] [--only cnn_train lstm_train] [-- RUN.PY ARGS]

Each commit's tree is exported (`git archive`, nothing in the repository changes) into a temporary
folder, and each run uses that tree's own netcli and its own benchmarks/run.py, so an older run.py
runs against the engine it was written for. For every workload and round the two commits take turns
(A then B, B then A in the next round, so neither always runs second), each as

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py --only WORKLOAD RUN.PY ARGS

with RUN.PY ARGS `--threads 1 2 --repeats 20` unless given after `--`. Prints each run's table as
run.py printed it, then one table: per workload, batch and thread count, each commit's netcli ms and
its ratio to torch (medians over the rounds) and B's ratio over A's (below 1: B is faster against
the same torch). Run it on a quiet machine (`uptime`); a whole comparison at the defaults takes about
10 minutes on 2 cores. Exits 1 if a run fails (run.py exits non-zero when netcli and torch disagree).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ["mlp_train", "cnn_train", "cnn_eval", "lstm_train", "gru_train", "transformer_train", "vae_train",
             "ddpm_train"]
HEADER = "workload"


def export(commit: str, into: Path) -> str:
    """Write ``commit``'s tree into ``into``; return its short hash."""
    short = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", commit], capture_output=True, text=True,
                           check=True).stdout.strip()
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", short], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait():
        raise SystemExit(f"git archive {commit} failed")
    return short


def rows(output: str) -> dict[tuple[str, int, int], tuple[float, float]]:
    """run.py's final table: {(workload, batch, threads): (netcli ms, ratio)}."""
    out, table = {}, False
    for line in output.splitlines():
        parts = line.split()
        if parts[:1] == [HEADER]:
            table = True
        elif table and len(parts) >= 6:
            out[(parts[0], int(parts[1]), int(parts[2]))] = (float(parts[3]), float(parts[5]))
    return out


def main() -> None:
    argv = sys.argv[1:]
    passed = argv[argv.index("--") + 1:] if "--" in argv else ["--threads", "1", "2", "--repeats", "20"]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="the first commit (e.g. the baseline)")
    ap.add_argument("b", help="the second commit")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each workload per commit (medians shown)")
    ap.add_argument("--only", nargs="+", default=WORKLOADS, help="workloads (run.py's names)")
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "PYTHONPATH")}
    results: dict[str, list[dict]] = {}
    failed = []
    with tempfile.TemporaryDirectory(prefix="netcli-compare-") as tmp:
        trees = {}
        for label, commit in (("A", args.a), ("B", args.b)):
            tree = Path(tmp) / label
            tree.mkdir()
            trees[label] = (export(commit, tree), tree)
        a, b = trees["A"][0], trees["B"][0]
        print(f"A = {args.a} ({a}), B = {args.b} ({b}); run.py {' '.join(passed)}; "
              f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
        for r in range(args.rounds):
            for workload in args.only:
                for label in ("A", "B") if r % 2 == 0 else ("B", "A"):
                    short, tree = trees[label]
                    cmd = [sys.executable, "benchmarks/run.py", "--only", workload, *passed]
                    p = subprocess.run(cmd, cwd=tree, env={**env, "PYTHONPATH": str(tree)}, capture_output=True,
                                       text=True)
                    print(f"\n--- {label} = {short}, round {r + 1}: {workload} (exit {p.returncode})\n{p.stdout}"
                          f"{p.stderr}", flush=True)
                    if p.returncode:
                        failed.append(f"{label} {workload} round {r + 1}")
                    results.setdefault(label, []).append(rows(p.stdout))

    print(f"\nmedians over {args.rounds} round(s); ratio = netcli ms / torch ms in the same run; "
          f"load average {os.getloadavg()[0]:.2f} at the end\n")
    print(f"| workload | batch | threads | A {a} netcli ms | A ratio | B {b} netcli ms | B ratio | B ratio / A ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    keys = list(dict.fromkeys(k for side in results.values() for run in side for k in run))
    for key in keys:
        cells = []
        ratios = []
        for label in ("A", "B"):
            got = [run[key] for run in results.get(label, []) if key in run]
            if got:
                ms, ratio = statistics.median(g[0] for g in got), statistics.median(g[1] for g in got)
                cells += [f"{ms:.2f}", f"{ratio:.2f}"]
                ratios.append(ratio)
            else:
                cells += ["-", "-"]
        change = f"{ratios[1] / ratios[0]:.2f}" if len(ratios) == 2 else "-"
        print(f"| {key[0]} | {key[1]} | {key[2]} | {' | '.join(cells)} | {change} |")
    if failed:
        sys.exit(f"\nfailed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
