"""`netcli eval`: what it scored (run, checkpoint, step, epoch) in its output and eval.json, a warning
for a run that is not finished, and one-line errors for a split the data set lacks or that does not exist."""
import json

import pytest
from test_hostile import assert_clean_error
from test_resume import CONFIG, STEPS_PER_EPOCH, interrupt_at, only_run, train  # noqa: F401 (a fixture)
from tinyrun import invoke, write_tiny_data

from netcli.runs import load_checkpoint, run_lock


@pytest.fixture
def tiny(tmp_path):
    write_tiny_data(tmp_path)
    (tmp_path / "mlp.yaml").write_text(CONFIG)
    return tmp_path


def evaluated(run):
    return json.loads((run / "eval.json").read_text())["evaluated"]


def test_eval_says_and_records_what_it_scored(tiny):
    assert train(tiny, tiny / "mlp.yaml").exit_code == 0
    run = only_run(tiny / "runs")
    state = load_checkpoint(run / "checkpoints" / "best.npz")[1]["state"]
    r = invoke("eval", tiny / "runs" / "mlp")
    assert r.exit_code == 0, r.output
    assert f"evaluated {run}: checkpoints/best.npz, step {state['step']}, epoch {state['epoch']} of 3\n" in r.stdout
    assert "warning" not in r.output
    assert evaluated(run) == {"run": str(run), "checkpoint": "checkpoints/best.npz", "step": state["step"],
                              "epoch": state["epoch"], "epochs": 3, "batch": 0, "status": "finished"}


def test_eval_of_an_interrupted_run_warns_and_records_its_status(tiny, interrupt_at):
    interrupt_at(STEPS_PER_EPOCH + 2)  # in epoch 2: best.npz is epoch 1's
    assert train(tiny, tiny / "mlp.yaml").exit_code == 130
    run = only_run(tiny / "runs")
    r = invoke("eval", run)
    assert r.exit_code == 0, r.output
    assert f"evaluated {run}: checkpoints/best.npz, step {STEPS_PER_EPOCH}, epoch 1 of 3\n" in r.stdout
    assert r.stderr == (f"warning: {run} did not finish (interrupted): this scores its checkpoints/best.npz; "
                        f"netcli train --resume {run} continues it\n")
    assert evaluated(run)["status"] == "interrupted" and evaluated(run)["epoch"] == 1


def test_eval_of_a_run_being_trained_warns_that_it_is_not_the_finished_model(tiny):
    assert train(tiny, tiny / "mlp.yaml", "--set", "train.epochs=1").exit_code == 0
    run = only_run(tiny / "runs")
    with run_lock(run):  # as a `train --resume` that is training it now holds it
        r = invoke("eval", run)
    assert r.exit_code == 0, r.output
    assert r.stderr == f"warning: {run} is still training: this scores its checkpoints/best.npz so far, " \
                       "not the finished model\n"
    assert evaluated(run)["status"] == "running"


def test_a_data_set_without_a_test_split_gets_a_hint_at_val(tiny):
    (tiny / "no_test.yaml").write_text(CONFIG.replace(", test_path: test.npz", ""))
    assert train(tiny, tiny / "no_test.yaml").exit_code == 0
    run = only_run(tiny / "runs")
    r = invoke("eval", run)
    assert_clean_error(r, f"{run}: its data set has no test split; evaluate another with --split val (it has: val, train)")
    assert r.stderr.count("\n") == 1
    assert not (run / "eval.json").exists()
    r = invoke("eval", run, "--split", "val")
    assert r.exit_code == 0, r.output
    assert json.loads((run / "eval.json").read_text())["samples"] == 10  # 48 * 0.2


def test_an_unknown_split_is_one_line_listing_the_valid_ones(tiny):
    assert train(tiny, tiny / "mlp.yaml", "--set", "train.epochs=1").exit_code == 0
    r = invoke("eval", only_run(tiny / "runs"), "--split", "bogus")
    assert r.stderr == "error: --split bogus: no such split; valid splits: test, val, train\n"
    assert_clean_error(r)
