"""What the CLI shows while it works: training progress, download progress, step progress (rich).

    reporter = RichReporter(console, plain=False)   # a train.Reporter: live view on a terminal, plain lines in a pipe
    with ByteProgress(console) as progress: fetch("mnist", progress=progress)   # (done, total, what) callbacks
    with StepProgress(console, "sampling") as progress: ...                     # (done, total) callbacks

The training view is laid out for the console's width, field by field, so that nothing is cut:
at 80 columns it is two lines (epoch k/N, bar, batch, ETA of the epoch and of the run; the running
loss and the monitored metric, then what else fits); from 120 columns one line with more fields.
"""
from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeRemainingColumn, TransferSpeedColumn)
from rich.text import Text

from .train import Reporter, TrainState

WIDE = 120  # from this width the view is one line


def duration(seconds: float | None) -> str:
    """0:07, 12:30, 1:02:03; '-:--' while unknown."""
    if seconds is None:
        return "-:--"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def pack(essential: list[str], optional: list[str], width: int, first: str = "", indent: str = "") -> list[str]:
    """Fields joined by two spaces into lines of at most ``width``, after ``first`` on the first line and
    ``indent`` on the others: every essential field (on more lines if need be; a field is never split),
    then each optional one that still fits on the last line."""
    lines, line = [], first
    for f in essential:
        if line and len(line) + 2 + len(f) > width:
            lines.append(line)
            line = indent + f
        else:
            line = f"{line}  {f}" if line else f
    for f in optional:
        if len(line) + 2 + len(f) <= width:
            line = f"{line}  {f}" if line else f
    return [*lines, line]


def metric(name: str, value: float | None) -> str:
    return f"{name} {'-' if value is None else f'{value:.4f}'}"


class TrainingView:
    """The live lines of a training run; the reporter updates its fields, rich renders it at the console's width."""

    def __init__(self):
        self.epoch = self.epochs = self.batch = self.batches = self.step = self.total_steps = 0
        self.means: dict[str, float] = {}   # this epoch's running train means (loss first)
        self.monitor, self.monitored, self.best = "", None, None  # its name, last value, best value
        self.lr = self.rate = None
        self.epoch_left = self.run_left = None  # seconds
        self.elapsed = 0.0

    def progress(self, width: int, bar: int) -> tuple[str, Text]:
        """'epoch k/N', the bar and the counts as (plain text of the parts but the bar, styled line)."""
        head, count = f"epoch {self.epoch}/{self.epochs}", f"{self.batch:,}/{self.batches:,}"
        eta = (f"ETA {duration(self.epoch_left)} · run {duration(self.run_left)}" if width >= 60
               else f"{duration(self.epoch_left)} · {duration(self.run_left)}")
        done = round(bar * self.batch / self.batches) if self.batches else 0
        line = Text.assemble((head, "bold"), " ", ("━" * done, "bar.complete"), ("━" * (bar - done), "bar.back"),
                             " ", count, "  ", (eta, "progress.remaining"))
        return f"{head}  {count}  {eta}", line

    def fields(self) -> tuple[list[str], list[str]]:
        """(essential, optional) metric fields, most wanted first."""
        loss = self.means.get("loss")
        watched = metric(self.monitor, self.monitored)
        if self.best is not None and self.best != self.monitored:
            watched += f" (best {self.best:.4f})"
        rest = [metric(f"train_{k}", v) for k, v in self.means.items() if k != "loss"]
        extra = [*([f"lr {self.lr:.2e}"] if self.lr is not None else []),
                 *([f"{self.rate:,.0f} samples/s"] if self.rate else []),
                 f"step {self.step:,}/{self.total_steps:,}", f"elapsed {duration(self.elapsed)}"]
        return [metric("loss", loss), watched], rest + extra

    def lines(self, width: int) -> list[Text]:
        essential, optional = self.fields()
        plain, _ = self.progress(width, 0)
        if width >= WIDE:  # one line: the fields that fit beside a bar of 10, then the bar takes what is left
            rest = pack(essential, optional, width, first="x" * (len(plain) + 10))  # x: the progress part's room
            bar = 10 + min(30, width - len(rest[0]))
            return [self.progress(width, bar)[1] + Text(rest[0][len(plain) + 10:]), *map(Text, rest[1:])]
        bar = max(4, min(60, width - len(plain)))
        return [self.progress(width, bar)[1], *map(Text, pack(essential, optional, width))]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.lines(options.max_width)


class RichReporter(Reporter):
    """Training progress for the CLI: on a terminal a live view fitted to its width and a line for each
    finished epoch; with ``plain`` (``-q``, a pipe) one plain line an epoch. The run directory is named
    at the start; a data set fetched on first use shows its download progress (``data_progress``) on stderr."""

    def __init__(self, console: Console, plain: bool, err: Console | None = None):
        self.console, self.plain = console, plain
        self.data_progress = ByteProgress(err or console)
        self.view, self.live = TrainingView(), None
        self.seen0 = None

    def __exit__(self, *exc):
        self.data_progress.close()
        if self.live:
            self.live.stop()

    def start(self, run_dir: Path, step: int, total_steps: int, monitor: str) -> None:
        self.data_progress.close()  # the data is loaded
        self.view.step, self.view.total_steps, self.view.monitor = step, total_steps, monitor
        self.t_start, self.val_s, self.last_step_at = time.time(), 0.0, None
        self.step_s, self.steps_timed = 0.0, 0  # time between steps of an epoch (its end not in it)
        self.console.print(f"run: {run_dir}", soft_wrap=True)

    def epoch_start(self, epoch, epochs, batches, start):
        self.t0, self.seen0, self.last_step_at = time.time(), None, None
        v = self.view
        v.epoch, v.epochs, v.batch, v.batches, v.means = epoch + 1, epochs, start, batches, {}
        self.etas()
        if not self.plain and self.live is None:
            self.live = Live(self.view, console=self.console, refresh_per_second=4, transient=True)
            self.live.start()

    def rate(self, seen: int) -> float:
        return (seen - self.seen0) / max(time.time() - self.t1, 1e-9) if self.seen0 is not None else 0.0

    def step(self, state: TrainState, metrics, lr):
        now = time.time()
        if self.seen0 is None:  # throughput counts from the end of the first step of the epoch (no warm-up in it)
            self.seen0, self.t1 = state.seen, now
        if self.last_step_at is not None:  # so does the time a step takes
            self.step_s, self.steps_timed = self.step_s + now - self.last_step_at, self.steps_timed + 1
        self.seen, self.last_step_at = state.seen, now
        v = self.view
        v.batch, v.step, v.lr, v.best = state.batch, state.step, lr, state.best
        v.means = {k: s / state.seen for k, s in state.sums.items()} if state.seen else {}
        if v.monitor.startswith("train_"):
            v.monitored = v.means.get(v.monitor.removeprefix("train_"))
        v.rate = self.rate(state.seen)
        self.etas()

    def etas(self) -> None:
        """Seconds left in the epoch and in the run: steps left at the measured time a step, plus each
        remaining epoch's end (validation) at the time the last one took."""
        v = self.view
        v.elapsed = time.time() - self.t_start
        per_step = self.step_s / self.steps_timed if self.steps_timed else None
        if per_step is None:
            v.epoch_left = v.run_left = None
            return
        steps_left = max(v.total_steps - v.step, 0)  # train.max_steps may end the run inside this epoch
        v.epoch_left = min(v.batches - v.batch, steps_left) * per_step + self.val_s
        v.run_left = steps_left * per_step + (v.epochs - v.epoch + 1) * self.val_s

    def epoch_end(self, epoch, metrics):
        if self.last_step_at is not None:
            self.val_s = time.time() - self.last_step_at  # validation and end-of-epoch work
        v = self.view
        if v.monitor in metrics:
            v.monitored, v.best = metrics[v.monitor], None  # the best so far comes with the next step's state
        rate = self.rate(self.seen) if self.seen0 is not None else 0.0
        text = "  ".join(f"{k} {x:.4f}" for k, x in metrics.items())
        took = time.time() - self.t0
        if self.plain:
            self.console.print(f"epoch {epoch + 1}: {text}  ({rate:,.0f} samples/s, {took:.1f} s)")
            return
        order = sorted(metrics, key=lambda k: k != v.monitor)  # the monitored metric first
        fields = [f"{k} {metrics[k]:.4f}" for k in order]
        lines = pack([f"epoch {epoch + 1}/{v.epochs}", *fields, f"{took:.1f} s", f"{rate:,.0f} samples/s"], [],
                     self.console.width, indent="  ")
        self.console.print("\n".join(lines), soft_wrap=True)

    def message(self, text):
        self.console.print(text, soft_wrap=True)


class ByteProgress:
    """A bar fed by the data package's (done, total, what) callback, started at its first call; a total of
    0 means unknown (a server that sends no length, pip's wheel): then it counts bytes and pulses.
    Off a terminal, one line per item fetched."""

    def __init__(self, console: Console):
        self.console, self.bar, self.tasks = console, None, {}

    def __enter__(self):
        return self

    def __call__(self, done: int, total: int, what: str = "") -> None:
        if not self.console.is_terminal:
            if what not in self.tasks:
                self.tasks[what] = None
                self.console.print(f"fetching {what}", soft_wrap=True)
            return
        if self.bar is None:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                TimeRemainingColumn(), console=self.console, transient=True)
            self.bar.start()
        if what not in self.tasks:
            self.tasks[what] = self.bar.add_task(what, total=total or None)
        self.bar.update(self.tasks[what], completed=done, total=total or None)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __exit__(self, *exc):
        self.close()


class StepProgress:
    """A bar fed by a (done, total) callback, e.g. DDPM sampling steps; nothing off a terminal."""

    def __init__(self, console: Console, description: str):
        self.console, self.description = console, description

    def __enter__(self):
        self.bar = Progress(TextColumn(self.description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=self.console, transient=True, disable=not self.console.is_terminal)
        self.bar.__enter__()
        self.task = None
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.bar.add_task(self.description, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)
