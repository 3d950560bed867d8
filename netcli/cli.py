"""The netcli command line: thin typer commands over library functions, printed with rich.

A user's mistake ends with one line a problem (`file:line: key: message`) and
exit code 2; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import functools
import sys
import time
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from .display import ByteProgress, RichReporter, StepProgress
from .train import Reporter

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Declarative neural-network training on a numpy engine.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch, verify and list data sets.")
app.add_typer(data_app, name="data")
out = Console(highlight=False, soft_wrap=True, markup=False)  # paths and names print as they are
err = Console(stderr=True, highlight=False, markup=False)
_debug = {"on": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks of errors"),
          plugin: List[str] = typer.Option([], "--plugin", help="a .py file or module that registers components "
                                           "(repeatable; runs record it), e.g. netcli --plugin swish.py train x.yaml")):
    _debug["on"] = debug
    from .backend import tune_allocator

    tune_allocator()
    if plugin:
        from .plugins import load_command_line

        user_errors(load_command_line)(plugin)


def user_errors(fn):
    """Turn a user's mistake into one line a problem and exit code 2 (3 for a diverged run).

    Warnings (e.g. a cached data set that failed its check and is fetched again) print as one line too.
    """

    @functools.wraps(fn)
    def run(*args, **kwargs):
        from . import distributed
        from .data import DataError
        from .errors import UserError
        from .registry import UnknownNameError

        try:
            with warnings.catch_warnings():
                warnings.showwarning = lambda message, *_, **__: _say("warning:", "yellow", str(message))
                return fn(*args, **kwargs)
        except (UserError, DataError, UnknownNameError, MemoryError) as e:
            if _debug["on"]:
                raise
            text = str(e)
            if isinstance(e, MemoryError):  # e.g. activations of a huge batch; numpy says how much it wanted
                text = f"out of memory ({text or 'MemoryError'}); use a smaller model or batch_size"
            if distributed.is_root():  # under mpiexec every rank meets the same mistake: say it once
                for line in text.splitlines() or [e.__class__.__name__]:
                    _say("error:", "red", line)
            raise typer.Exit(getattr(e, "exit_code", 2))
        except distributed.RankLost as e:
            distributed.exit_lost(e)
        except OSError as e:  # a path of the user's that the commands did not check first
            if _debug["on"] or e.filename is None:
                raise
            from .userfiles import os_reason

            if distributed.is_root():
                _say("error:", "red", f"{e.filename}: {os_reason(e)}")
            raise typer.Exit(2)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130)

    return run


def _say(label: str, style: str, text: str) -> None:
    """One line on stderr; ``text`` is shown as it is (a user's '[x]' is not rich markup)."""
    err.print(Text.assemble((label, style), " ", text), soft_wrap=True)


SET_HELP = "override a config value, e.g. --set optimizer.lr=3e-4 (repeatable)"


# -- train / eval / validate / summary ---------------------------------------------------


@app.command()
@user_errors
def train(config: Optional[Path] = typer.Argument(None, help="experiment YAML file"),
          set_: List[str] = typer.Option([], "--set", help=SET_HELP),
          runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where run directories go"),
          resume: Optional[Path] = typer.Option(None, "--resume", help="continue this run from its last checkpoint"),
          init_from: Optional[Path] = typer.Option(None, "--init-from", help="start from another run's weights"),
          allow_config_change: bool = typer.Option(False, "--allow-config-change",
                                                   help="resume even though the config changed (recorded)"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="plain lines, no progress bar"),
          tensorboard: bool = typer.Option(False, "--tensorboard",
                                           help="also write TensorBoard event files (train.tensorboard: true)")):
    """Train a model from an experiment file; writes runs/<name>/<timestamp>/.

    Under `mpiexec -n N` the N ranks train one run together (rank 0 reports and writes).
    """
    from . import distributed
    from .errors import UserError
    from .train import prepare_config, train as run_training

    distributed.init()
    if config is None and resume is None:
        raise UserError("give a config file, or --resume RUN")
    if tensorboard and config is None:
        raise UserError("--tensorboard goes with a config file; a resumed run keeps its config's train.tensorboard")
    set_ = [*set_, "train.tensorboard=true"] if tensorboard else set_
    cfg = prepare_config(config, set_) if config is not None else None
    reporter = RichReporter(out, quiet or not out.is_terminal, err) if distributed.is_root() else Reporter()
    with reporter:
        result = run_training(cfg, runs_dir, base_dir=config.parent if config else None, reporter=reporter,
                              resume=resume, init_from=init_from, allow_config_change=allow_config_change,
                              overrides=set_, data_progress=reporter.data_progress if distributed.is_root() else None)
    metrics = "  ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    if distributed.is_root():
        out.print(f"{result.stopped}: {result.run_dir}  {metrics}")
    if result.stopped == "interrupted":
        raise typer.Exit(130)
    if distributed.is_root():
        from .app.next_steps import next_commands

        out.print("next:\n" + "\n".join(f"  {c}" for c in next_commands(result.run_dir, result.experiment)))


@app.command("eval")
@user_errors
def eval_(run: Path = typer.Argument(..., help="run directory (or runs/<name> for its newest run)"),
          split: str = typer.Option("test", help="test, val or train"),
          classifier: Optional[Path] = typer.Option(None, "--classifier",
                                                    help="score generated samples with this classifier run"),
          n: int = typer.Option(1000, "-n", min=2, help="samples to score with --classifier"),
          seed: int = typer.Option(0, "--seed", help="with --classifier: seed of the sampling noise"),
          steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                              help="with --classifier, DDPM: DDIM sampling with this many steps")):
    """Metrics of a run's best checkpoint on the test split; writes eval.json."""
    from .app.evaluate import evaluate_run

    if classifier is None and (steps is not None or seed != 0 or n != 1000):
        from .errors import UserError

        raise UserError("-n, --seed and --steps choose the samples scored with --classifier; give a classifier run")
    if classifier is not None:
        from .app.quality import sample_quality

        with StepProgress(err, "sampling") as progress:
            result = sample_quality(run, classifier, n=n, seed=seed, steps=steps, progress=progress)
        _say_evaluated(result["evaluated"])
        _print_metrics(f"sample quality ({result['sampler']})", result["metrics"])
        return
    result = evaluate_run(run, split)
    _say_evaluated(result["evaluated"])
    _print_metrics(f"{split} split, {result['samples']} samples", result["metrics"])
    if "confusion_matrix" in result:
        table = Table("class", "accuracy", *[str(i) for i in range(len(result["confusion_matrix"]))],
                      title="confusion matrix (rows: true, columns: predicted)")
        for i, (acc, row) in enumerate(zip(result["per_class_accuracy"], result["confusion_matrix"])):
            table.add_row(str(i), f"{acc:.4f}", *map(str, row))
        out.print(table)


def _say_evaluated(evaluated: dict) -> None:
    """What was scored, on stdout; a warning on stderr when the run is not finished."""
    from .app.evaluate import describe, unfinished

    out.print(f"evaluated {describe(evaluated)}")
    warning = unfinished(evaluated)
    if warning:
        _say("warning:", "yellow", warning)


def _print_metrics(title: str, metrics: dict) -> None:
    table = Table("metric", "value", title=title)
    for k, v in metrics.items():
        table.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    out.print(table)


@app.command()
@user_errors
def validate(config: Path = typer.Argument(..., help="experiment YAML file"),
             set_: List[str] = typer.Option([], "--set", help=SET_HELP)):
    """Check a config: keys, types, names and layer shapes, every problem at once."""
    from .train import prepare_experiment

    cfg, exp = prepare_experiment(config, set_)
    out.print(f"{config}: ok ({cfg.model.type}, {exp.model.num_params():,} parameters, "
              f"{exp.steps_per_epoch} steps per epoch)")


@app.command()
@user_errors
def summary(target: Path = typer.Argument(..., help="experiment YAML file or run directory"),
            set_: List[str] = typer.Option([], "--set", help=SET_HELP)):
    """A table of the model's layers: output shape, parameters and forward FLOPs."""
    from .app.summary import layer_rows
    from .train import prepare_experiment

    if target.is_dir():
        from .runs import find_run

        target = find_run(target) / "config.yaml"
    cfg, exp = prepare_experiment(target, set_)
    table = Table("layer", "type", "output shape", "params", "FLOPs", "options", title=f"{cfg.name} ({cfg.model.type})")
    for row in layer_rows(exp.model):
        table.add_row(row.path, row.type, str(row.out_shape), f"{row.params:,}", f"{row.flops:,}", row.options)
    total_p = exp.model.num_params()
    table.add_row("total", "", "", f"{total_p:,}", f"{sum(r.flops for r in layer_rows(exp.model, leaves_only=True)):,}",
                  f"{total_p * 4 / 2**20:.2f} MiB of float32 params", end_section=True)
    out.print(table)


@app.command()
@user_errors
def sample(run: Path = typer.Argument(..., help="a VAE, DDPM or autoencoder run directory"),
           n: int = typer.Option(64, "-n", min=1, help="number of samples"),
           seed: int = typer.Option(0, "--seed", help="seed of the sampling noise"),
           steps: Optional[int] = typer.Option(None, "--steps", min=1, help="DDPM: DDIM sampling with this many steps"),
           out_path: Optional[Path] = typer.Option(None, "--out", help="PNG path (default: the run's samples/)"),
           interpolate: bool = typer.Option(False, "--interpolate", help="VAE: interpolate between two test images")):
    """Generate samples (prior samples, reconstructions or interpolations) as a PNG grid and a .npy."""
    from .app.sample import sample_run

    with StepProgress(err, "sampling") as progress:
        result = sample_run(run, n=n, seed=seed, steps=steps, out=out_path, interpolate=interpolate,
                            progress=progress)
    out.print(f"wrote {result['png']} and {result['npy']}")


@app.command()
@user_errors
def predict(run: Path = typer.Argument(..., help="run directory (or runs/<name>: newest) or checkpoint file"),
            inputs: List[str] = typer.Argument(..., metavar="INPUT...",
                                               help="images, folders of images, .npy/.npz, .csv, or - for stdin"),
            out_path: Optional[Path] = typer.Option(None, "-o", "--out", help="write the results to this file"),
            fmt: Optional[str] = typer.Option(None, "--format",
                                              help="table, json or csv (default: table on a terminal, else json; "
                                                   "-o FILE.csv: csv)"),
            top_k: int = typer.Option(3, "--top-k", min=1, help="classes listed per input"),
            checkpoint: str = typer.Option("best", "--checkpoint", help="best or last"),
            polarity: str = typer.Option("auto", "--polarity",
                                         help="images: auto, light-on-dark (MNIST) or dark-on-light (scans)"),
            skip_bad: bool = typer.Option(False, "--skip-bad", help="report unreadable inputs and go on")):
    """Predict classes or values for your own inputs; no data set is loaded."""
    import io
    import json
    from collections import Counter

    from .errors import UserError
    from .predict import predict as run_predict, rows_as_csv
    from .runs import write_text
    from .trained import load_run

    if polarity not in ("auto", "light-on-dark", "dark-on-light"):
        raise UserError(f"--polarity is auto, light-on-dark or dark-on-light, not {polarity!r}")
    fmt = fmt or ("csv" if out_path and out_path.suffix == ".csv" else "json" if out_path or not out.is_terminal
                  else "table")
    if fmt not in ("table", "json", "csv"):
        raise UserError(f"--format is table, json or csv, not {fmt!r}")
    result = run_predict(load_run(run, checkpoint), inputs, top_k=top_k, polarity=polarity, skip_bad=skip_bad)
    for line in result.skipped:
        _say("skipped:", "yellow", line)
    if result.polarity:
        read = Counter(result.polarity.values())  # a mix says how many of each: "1 ... dark-on-light, 10 ..."
        _say("note:", "cyan", ", ".join(f"{n} image(s) read as {kind}" for kind, n in sorted(read.items()))
             + ("" if "dark-on-light" in read else " (MNIST's white ink on black; --polarity dark-on-light for scans)"))
    rows = result.rows
    if fmt == "table":
        table = Table(*(["input", "class", "probability", f"top {top_k}"] if "class" in rows[0]
                        else ["input", "classes"] if "classes" in rows[0] else ["input", "values"]))
        for r in rows:
            cells = ([r["class"], f"{r['probability']:.4f}", "  ".join(f"{c} {p:.3f}" for c, p in r["top_k"])]
                     if "class" in r else [" ".join(r["classes"])] if "classes" in r
                     else [" ".join(f"{v:.6g}" for v in r["values"])])
            table.add_row(r["input"], *cells)
        if out_path is None:
            out.print(table)
            return
        buf = io.StringIO()
        Console(file=buf, width=200).print(table)
        text = buf.getvalue()
    else:
        text = "[\n" + ",\n".join(map(json.dumps, rows)) + "\n]\n" if fmt == "json" else rows_as_csv(rows)
    if out_path is None:
        sys.stdout.write(text)
    else:
        write_text(out_path, text)


@app.command()
@user_errors
def export(run: Path = typer.Argument(..., help="run directory (or runs/<name>: newest) or checkpoint file"),
           fmt: str = typer.Option(..., "--format", help="onnx or safetensors"),
           out_path: Optional[Path] = typer.Option(None, "-o", "--out", help="file to write (default: in the run)"),
           checkpoint: str = typer.Option("best", "--checkpoint", help="best or last")):
    """Export a run as ONNX (the network) or safetensors (its weights), with its config and data description
    (needs netcli[export])."""
    from .errors import UserError

    if fmt == "onnx":
        from .onnx import export_onnx as write
    elif fmt == "safetensors":
        from .export import export_safetensors as write
    else:
        raise UserError(f"--format: onnx or safetensors, not {fmt!r}")
    out.print(f"wrote {write(run, out_path, checkpoint)}")


@app.command()
@user_errors
def bench(config: Path = typer.Argument(..., help="experiment YAML file"),
          set_: List[str] = typer.Option([], "--set", help=SET_HELP),
          repeats: int = typer.Option(10, "--repeats", min=1, help="timed repeats per layer (median)")):
    """Per-layer forward/backward time, FLOPs, GFLOP/s and memory of a config's model."""
    from .app.bench import bench_config

    table = bench_config(config, set_, repeats=repeats)
    out.print(table)


# -- learning the config format: schema ----------------------------------------------------


@app.command()
@user_errors
def schema(out_path: Optional[Path] = typer.Option(None, "-o", "--out", help="write to this file (default: stdout)")):
    """The JSON Schema (draft 2020-12) of experiment files, for editors: every component and option."""
    from .schema import schema_text, write_schema

    if out_path is None:
        out.print(schema_text(), end="")
    else:
        out.print(f"wrote {write_schema(out_path)}")


@app.command()
@user_errors
def init(model: Optional[str] = typer.Option(None, "--model", help="mlp, cnn, rnn, lstm, gru, transformer, "
                                             "autoencoder, vae or ddpm"),
         data: Optional[str] = typer.Option(None, "--data", help="mnist, fashion_mnist, or a .csv / .npz file"),
         target: Optional[str] = typer.Option(None, "--target", help="CSV: the column to predict"),
         out_path: Optional[Path] = typer.Option(None, "-o", "--out", help="config file to write (default: NAME.yaml)"),
         force: bool = typer.Option(False, "--force", help="overwrite the file if it exists")):
    """Write a commented, valid config for a model kind and a data source (asks on a terminal for what is missing)."""
    from .errors import UserError
    from .init import KINDS, write_config

    ask = _ask if sys.stdin.isatty() else None
    if model is None or data is None:
        if ask is None:
            raise UserError("give --model (" + ", ".join(KINDS) + ") and --data (mnist, fashion_mnist, or a .csv / .npz file)")
        model = model or ask("model kind", list(KINDS), "mlp")
        data = data or ask("data (mnist, fashion_mnist, or a .csv / .npz path)", None, "mnist")
    out_path = out_path or Path(f"{Path(data).stem}_{model}.yaml")
    path = write_config(model, data, out_path, target=target, force=force, ask=ask)
    out.print(f"wrote {path}; next: netcli validate {path} && netcli train {path}")


def _ask(question: str, choices: Optional[List[str]], default: Optional[str]) -> str:
    import click

    return typer.prompt(question, default=default, type=click.Choice(choices) if choices else None)


@app.command("config")
@user_errors
def config_(target: Path = typer.Argument(..., help="experiment YAML file or run directory"),
            set_: List[str] = typer.Option([], "--set", help=SET_HELP)):
    """The resolved config, every default filled in, each value marked: from the file, from --set, or a default."""
    from .origins import render, resolved

    if target.is_dir():
        from .runs import find_run

        target = find_run(target) / "config.yaml"
    out.print(render(resolved(target, set_)), end="")


@app.command()
@user_errors
def gradcheck(targets: List[str] = typer.Argument(..., help="plugin .py files or modules (their layers and losses) "
                                                   "and/or built-in layer or loss names"),
              tol: float = typer.Option(1e-6, "--tol", help="largest relative error that passes")):
    """Finite-difference gradient check (float64, input and parameters) and contract checks; exit 1 on a failure."""
    from .gradcheck import check_targets

    results = check_targets(targets, tol)
    for r in results:
        table = Table("check", "relative error", "result", title=f"{r.kind} {r.name}: {r.title}", title_justify="left")
        for array, e in r.errors.items():
            table.add_row(f"d/d {array}", f"{e:.2e}", "pass" if e < tol else "FAIL")
        for what, ok in r.contract.items():
            table.add_row(what, "", "pass" if ok else "FAIL")
        if r.problem:
            table.add_row(r.problem, "", "FAIL")
        table.add_row("worst", f"{r.worst:.2e}", "PASS" if r.ok else "FAIL", end_section=True)
        out.print(table)
    failed = [r for r in results if not r.ok]
    out.print(f"{len(results) - len(failed)} of {len(results)} cases passed (tolerance {tol:g})")
    if failed:
        raise typer.Exit(1)


@app.command("list")
@user_errors
def list_(kind: str = typer.Argument(..., help="layers, models, losses, optimizers, schedules or datasets"),
          name: Optional[str] = typer.Argument(None, help="one entry: its options, shape, example and source")):
    """Every registered component of a kind with a one-line description, or one entry in full."""
    from .reference import entries, entry

    if name is None:
        table = Table("name", "description", title=kind)
        for e in entries(kind):
            table.add_row(e.name, e.summary)
        out.print(table)
        return
    _print_entry(entry(kind, name))


@app.command()
@user_errors
def layers(name: Optional[str] = typer.Argument(None, help="one layer: its options, shape, example and source")):
    """Every layer with a one-line description, or one layer in full (= netcli list layers [NAME])."""
    list_("layers", name)


def _print_entry(e) -> None:
    out.print(Text(e.name, style="bold"), "-", e.summary)
    if e.details:
        out.print(e.details)
    table = Table("option", "type", "default", "bounds", "description", title="options")
    for o in e.options:
        table.add_row(o.name, o.type, o.default, o.bounds, o.description)
    if e.options:
        out.print(table)
    if e.shape:
        out.print(f"shape:   {e.shape}")
    out.print(f"example: {e.example}")
    out.print(f"source:  {e.source}")


# -- many runs ----------------------------------------------------------------------------


@app.command()
@user_errors
def runs(args: List[str] = typer.Argument(None, metavar="[DIR] | diff RUN RUN [RUN...]",
                                          help="a directory of runs (default: runs), or: diff RUN RUN..."),
         sort: Optional[str] = typer.Option(None, "--sort", help="sort by a field, e.g. best; --sort=-best descending"),
         filter_: List[str] = typer.Option([], "--filter", help="keep runs whose FIELD matches, e.g. name='mnist*' "
                                                                "or status=running (repeatable)"),
         as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")):
    """A table of every run under DIR (`netcli runs diff A B ...`: their config differences and metrics)."""
    import json

    from .runs_table import diff_runs, list_runs, select

    if args and args[0] == "diff":
        diff = diff_runs(args[1:])
        if as_json:
            out.print(json.dumps(diff.to_dict(), indent=2))
            return
        table = Table("", *diff.runs, title="config differences")
        for key, values in diff.config.items():
            table.add_row(key, *(_cell(v) for v in values))
        out.print(table)
        table = Table("metric", *diff.runs, title="metrics")
        for key, values in diff.metrics.items():
            table.add_row(key, *(_cell(v) for v in values))
        out.print(table)
        return
    if len(args or []) > 1:
        from .errors import UserError

        raise UserError(f"give one directory of runs, not {len(args)} (compare runs with: netcli runs diff A B)")
    records = select(list_runs(args[0] if args else "runs"), filter_, sort)
    if as_json:
        out.print(json.dumps([r.to_dict() for r in records], indent=2))
        return
    table = Table("name", "stamp", "status", "model", "params", "epochs", "best", "test", "wall time",
                  title=f"{len(records)} runs")
    for r in records:
        status = f"running {r.progress:.0%}" if r.progress is not None else r.status
        table.add_row(r.name, r.stamp, status, r.model or "", f"{r.params:,}" if r.params is not None else "",
                      f"{r.epoch if r.epoch is not None else '?'}/{r.epochs or '?'}",
                      f"{r.monitor} {r.best:.4g}" if r.best is not None else "",
                      f"{r.test_metric} {r.test:.4g}" if r.test is not None else "",
                      _duration(r.wall_s))
    out.print(table)


@app.command()
@user_errors
def plot(runs_: List[Path] = typer.Argument(..., metavar="RUN...", help="run directories (or runs/<name>: newest)"),
         out_path: Optional[Path] = typer.Option(None, "-o", "--out", help="PNG file (default: RUN/curves.png, "
                                                                             "or curves.png for several runs)"),
         metric: Optional[str] = typer.Option(None, "--metric", help="only this metric, e.g. accuracy"),
         by: str = typer.Option("step", "--by", help="x axis: step or epoch")):
    """Learning curves of runs overlaid (train and val), and evaluated classifiers' confusion matrices, as a PNG."""
    from .plot import default_output, plot_runs

    out.print(f"wrote {plot_runs(runs_, out_path or default_output(runs_), metric=metric, by=by)}")


@app.command()
@user_errors
def sweep(sweep_file: Path = typer.Argument(..., metavar="SWEEP.yaml", help="sweep file: base config, space, "
                                                                             "objective, trials, sampler, pruner"),
          workers: int = typer.Option(1, "--workers", min=1, help="local worker processes pulling trials"),
          storage: Optional[str] = typer.Option(None, "--storage", help="study storage shared by machines, e.g. "
                                                "postgresql://user:pw@host/db (default: SQLite in the sweep dir)"),
          status: bool = typer.Option(False, "--status", help="show the trials so far and write the report; "
                                                            "run none"),
          sweep_dir: Optional[Path] = typer.Option(None, "--sweep-dir", help="default: sweeps/<name>"),
          runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where trial runs go")):
    """Search hyperparameters with Optuna: each trial an ordinary run; rerun to resume; a report at the end."""
    from .sweep import finish, load_sweep, run_sweep

    sw = load_sweep(sweep_file, sweep_dir, runs_dir, storage)
    code, t0 = 0, time.time()
    if not status:
        out.print(f"sweep {sw.name}: {sw.trials} trials, {sw.cfg.sampler} sampler, {sw.cfg.pruner.type} pruner, "
                  f"{workers} worker(s); study in {sw.dir if storage is None else 'the --storage database'}")
        code = run_sweep(sw, workers, say=out.print)
    report = finish(sw)
    table = Table("trial", "state", sw.cfg.objective.metric, "epochs", "time", *sw.cfg.space, "run / message",
                  title=f"sweep {sw.name}: {sum(r['state'] == 'complete' for r in report['rows'])} complete, "
                        f"{sum(r['state'] == 'pruned' for r in report['rows'])} pruned, "
                        f"{sum(r['state'] == 'failed' for r in report['rows'])} failed")
    for r in report["rows"]:
        table.add_row(str(r["number"]), r["state"], _cell(r["value"]), str(r["epochs"]), _duration(r["duration_s"]),
                      *(_cell(r["params"].get(k)) for k in sw.cfg.space), r["message"] or r["run"] or "")
    out.print(table)
    if report["best"]:
        b = report["best"]
        out.print(f"best: trial {b['number']}, {sw.cfg.objective.metric} {b['value']:.6g}; "
                  f"config: {report['best_yaml']} (netcli train {report['best_yaml']})")
    if report["history_png"]:
        out.print(f"optimization history: {report['history_png']}")
    if not status:
        out.print(f"{'interrupted' if code == 130 else 'done'} after {_duration(time.time() - t0)}"
                  + ("; run the same command again to resume" if code == 130 else ""))
    if code:
        raise typer.Exit(code)


def _cell(v) -> str:
    if v is None:
        return "-"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


# -- the web app ------------------------------------------------------------------------------


@app.command()
@user_errors
def ui(runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="the runs directory to show"),
       host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
       port: int = typer.Option(8765, "--port", min=0, max=65535, help="port to listen on (0: any free one)"),
       open_browser: bool = typer.Option(False, "--open", help="open the page in a web browser")):
    """A local web app: runs, live training curves, comparisons and a playground."""
    from .ui import serve

    try:
        serve(runs_dir, host, port, open_browser,
              ready=lambda url: out.print(f"netcli ui: {runs_dir} at {url}  (Ctrl-C stops)"))
    except KeyboardInterrupt:
        pass


# -- data ---------------------------------------------------------------------------------


@data_app.command("fetch")
@user_errors
def data_fetch(name: str = typer.Argument(..., help="data set name, e.g. mnist")):
    """Fetch, verify and cache a data set."""
    from .data import fetch

    from .backend import format_bytes

    with ByteProgress(err) as progress:
        info = fetch(name, progress=progress)
    table = Table("", Column("", overflow="fold"), show_header=False, title=f"{name}: cached and verified")
    for key, value in info.items():
        table.add_row(key, format_bytes(value) if key == "size" else str(value))
    out.print(table)


@data_app.command("ls")
@user_errors
def data_ls():
    """List cached data sets with their sizes."""
    from .backend import format_bytes
    from .data import list_cached

    table = Table("name", "path", "size", "verified")
    for item in list_cached():
        table.add_row(str(item.get("name")), str(item.get("path")), format_bytes(item.get("size", 0)),
                      str(item.get("verified", "")))
    out.print(table)


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
