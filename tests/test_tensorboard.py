"""`train.tensorboard: true` / `--tensorboard`: event files beside metrics.jsonl, the same steps after a resume."""
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tinyrun import invoke

from netcli.cli import RichReporter


def scalars(run) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows: tag -> [(step, value)], after it drops the steps a resume purged."""
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_scalars_match_metrics_jsonl(tiny):
    r = invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet", "--tensorboard",
               "--set", "train.log_every=1")
    assert r.exit_code == 0, r.output
    (run,) = (tiny / "runs" / "tiny").iterdir()
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    tb = scalars(run)
    assert set(tb) == {f"{rec['split']}/{rec['name'].removeprefix('val_')}" for rec in logged}
    for tag, points in tb.items():
        split, name = tag.split("/")
        want = [(rec["step"], rec["value"]) for rec in logged
                if rec["split"] == split and rec["name"].removeprefix("val_") == name]
        assert [s for s, _ in points] == [s for s, _ in want]
        assert [v for _, v in points] == pytest.approx([v for _, v in want], rel=1e-6)


def test_a_resumed_run_keeps_its_step_numbers(tiny, monkeypatch):
    common = ["--runs-dir", tiny / "runs", "--quiet", "--tensorboard", "--set", "train.log_every=1",
              "--set", "train.epochs=3", "--set", "train.checkpoint_every=2"]
    assert invoke("train", tiny / "tiny.yaml", *common, "--set", "name=straight").exit_code == 0
    step = RichReporter.step

    def crash_at_8(self, state, metrics, lr):  # as a second Ctrl-C: no last checkpoint, so step 7 is logged after
        step(self, state, metrics, lr)         # the checkpoint (step 6) and the resume logs it again
        if state.step == 8:
            raise KeyboardInterrupt

    monkeypatch.setattr(RichReporter, "step", crash_at_8)
    assert invoke("train", tiny / "tiny.yaml", *common, "--set", "name=stopped").exit_code == 130
    monkeypatch.setattr(RichReporter, "step", step)
    (stopped,) = (tiny / "runs" / "stopped").iterdir()
    assert [s for s, _ in scalars(stopped)["train/loss"]] == list(range(1, 8))
    r = invoke("train", "--resume", stopped, "--quiet")
    assert r.exit_code == 0 and "at step 6" in r.output, r.output
    (straight,) = (tiny / "runs" / "straight").iterdir()
    resumed, whole = scalars(stopped), scalars(straight)
    assert set(resumed) == set(whole)
    for tag in whole:
        assert [s for s, _ in resumed[tag]] == [s for s, _ in whole[tag]], tag  # no restart at 0, no repeats
        assert [v for _, v in resumed[tag]] == pytest.approx([v for _, v in whole[tag]], rel=1e-6), tag


def test_missing_tensorboardx_is_one_line_naming_the_extra(tiny, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if not installed
    r = invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet", "--tensorboard")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == ["error: this needs tensorboardX, which is not installed: "
                                             "pip install 'netcli[tensorboard]'"]
