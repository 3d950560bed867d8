"""TensorBoard event files beside metrics.jsonl (``train.tensorboard: true``; the ``tensorboard`` extra).

Every record written to metrics.jsonl also goes to ``RUN/tensorboard/`` as a
scalar tagged ``SPLIT/NAME`` (``train/loss``, ``train_epoch/accuracy``,
``val/loss``) at the run's optimizer step, so `tensorboard --logdir runs` shows
each run. A resumed run continues at its checkpoint's step and writes a purge
marker there: TensorBoard drops what the interrupted process had logged after
that step, as metrics.jsonl is cut back to it, and the steps stay those of a run
that was never stopped.
"""
from __future__ import annotations

import time
from pathlib import Path

from .errors import require_extra


class TensorBoardSink:
    """A metrics sink: ``sink(step, epoch, split, metrics)`` adds one scalar per metric."""

    def __init__(self, log_dir: Path, start_step: int = 0):
        tbx = require_extra("tensorboardX", "tensorboard")
        # on resume: drop what came after the checkpoint (its records at start_step are kept). Event files are
        # named by the second they were opened in: the suffix keeps a resume in the same second from overwriting
        # the file before it, and sorts after it, as TensorBoard reads them in name order.
        self.writer = tbx.SummaryWriter(str(log_dir), purge_step=start_step + 1 if start_step else None,
                                        flush_secs=10, filename_suffix=f".{time.time_ns()}")

    def __call__(self, step: int, epoch: int, split: str, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(f"{split}/{name.removeprefix(split + '_')}", float(value), step)

    def close(self) -> None:
        self.writer.close()  # flushes
