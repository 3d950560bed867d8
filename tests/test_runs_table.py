"""`netcli runs` and `netcli runs diff`: one record per run from its small files, status from the lock."""
import json
import shutil

import yaml
from tinyrun import invoke

from netcli.runs import run_lock
from netcli.runs_table import diff_runs, last_metric, list_runs, select


def train(tiny, *sets):
    args = ["train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet"]
    for s in sets:
        args += ["--set", s]
    return invoke(*args)


def test_records_of_finished_diverged_and_evaluated_runs(tiny):
    assert train(tiny).exit_code == 0
    assert invoke("eval", tiny / "runs" / "tiny").exit_code == 0
    assert train(tiny, "optimizer.lr=1e30", "name=blowup").exit_code == 3  # diverges
    assert train(tiny, "train.max_steps=3", "name=short").exit_code == 0
    recs = {r.name: r for r in list_runs(tiny / "runs")}
    assert set(recs) == {"tiny", "blowup", "short"}
    done = recs["tiny"]
    ev = json.loads((tiny / "runs" / "tiny" / done.stamp / "eval.json").read_text())
    summary = json.loads((tiny / "runs" / "tiny" / done.stamp / "summary.json").read_text())
    assert (done.status, done.model, done.epoch, done.epochs, done.step) == ("finished", "classifier", 2, 2, 10)
    assert done.params == summary["params"] > 0
    assert (done.monitor, done.best) == ("val_accuracy", summary["best"]["val_accuracy"])
    assert (done.test_metric, done.test) == ("accuracy", ev["metrics"]["accuracy"])
    assert done.wall_s == summary["wall_time_s"]
    assert recs["blowup"].status == "diverged" and "not finite" in recs["blowup"].message
    assert recs["short"].status == "max_steps" and recs["short"].test is None


def test_a_run_being_trained_shows_running_with_progress(tiny, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert train(tiny, "train.epochs=4").exit_code == 0
    (run,) = (tiny / "runs" / "tiny").iterdir()
    (run / "summary.json").unlink()  # as while training: the summary comes at the end
    lines = (run / "metrics.jsonl").read_text().splitlines()
    cut = next(i for i, line in enumerate(lines) if json.loads(line)["epoch"] == 1 and json.loads(line)["split"] == "val")
    (run / "metrics.jsonl").write_text("\n".join(lines[:cut + 1]) + "\n")  # epochs 0 and 1 done
    with run_lock(run):
        (rec,) = list_runs(tiny / "runs")
        assert rec.status == "running" and rec.epoch == 2 and rec.progress == 0.5
        assert rec.step == json.loads(lines[cut])["step"] and rec.wall_s is not None
        r = invoke("runs", tiny / "runs")
        assert r.exit_code == 0 and "running 50%" in r.output, r.output
    (rec,) = list_runs(tiny / "runs")
    assert rec.status == "stopped"  # the process ended without a summary


def test_last_metric_reads_the_end_of_a_long_log(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with open(path, "w") as f:
        for step in range(20000):
            f.write(json.dumps({"step": step, "epoch": step // 1000, "split": "train", "name": "loss",
                                "value": 1.0, "time": 0.0}) + "\n")
        f.write('{"step": 20000, "epo')  # a line being written
    assert last_metric(path)["step"] == 19999


def _fake_runs(root, n):
    """n run directories written the way train writes them, with metrics logs longer than the tail read_run reads."""
    cfg = yaml.safe_dump({"name": "x", "model": {"type": "classifier"}, "train": {"epochs": 5}})
    log = "".join(json.dumps({"step": s, "epoch": 0, "split": "train", "name": "loss", "value": 1.0, "time": 0.0})
                  + "\n" for s in range(300))
    for i in range(n):
        run = root / f"m{i % 10}" / f"20260101-000000-{i}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(cfg.replace("name: x", f"name: m{i % 10}"))
        (run / "summary.json").write_text(json.dumps({"status": "finished", "steps": 100, "epochs_completed": 5,
                                                      "best": {"val_loss": 1.0 / (i + 1)}, "params": i,
                                                      "wall_time_s": float(i)}))
        (run / "metrics.jsonl").write_text(log)


def test_a_thousand_runs_are_listed(tmp_path):
    """Each of 1,000 runs once, read right (how fast: benchmarks/many_runs.py)."""
    _fake_runs(tmp_path, 1000)  # 1,000 runs with 300-line metrics logs
    recs = list_runs(tmp_path)
    assert sorted(r.params for r in recs) == list(range(1000))
    assert all((r.name, r.status, r.step, r.wall_s, r.best) == (f"m{r.params % 10}", "finished", 100, float(r.params),
                                                                   1.0 / (r.params + 1)) for r in recs)
    assert [r.stamp for r in select(recs, sort="-best")][:2] == ["20260101-000000-0", "20260101-000000-1"]


def test_filter_sort_and_json(tmp_path):
    _fake_runs(tmp_path, 30)
    r = invoke("runs", tmp_path, "--filter", "name=m3", "--sort=-wall_s", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [row["wall_s"] for row in rows] == [23.0, 13.0, 3.0] and {row["name"] for row in rows} == {"m3"}
    r = invoke("runs", tmp_path, "--filter", "nmae=m3")
    assert r.exit_code == 2 and "FIELD one of" in r.output
    r = invoke("runs", tmp_path / "nowhere")
    assert r.exit_code == 2 and "no such directory" in r.output


def test_diff_shows_changed_config_keys_and_metrics(tiny):
    train(tiny)
    train(tiny, "optimizer.lr=0.05", "model.layers.0.filters=3")
    a, b = sorted((tiny / "runs" / "tiny").iterdir())
    d = diff_runs([a, b])
    assert d.config == {"model.layers.0.filters": [2, 3], "optimizer.lr": [0.01, 0.05]}
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert d.metrics["best val_accuracy"] == [sa["best"]["val_accuracy"], sb["best"]["val_accuracy"]]
    assert d.metrics["final train_loss"] == [sa["metrics"]["train_loss"], sb["metrics"]["train_loss"]]
    r = invoke("runs", "diff", a, b)
    assert r.exit_code == 0 and "optimizer.lr" in r.output and "0.05" in r.output, r.output
    c = tiny / "runs" / "copy"
    shutil.copytree(a, c)
    assert invoke("runs", "diff", a, c, "--json").output.count('"config": {}') == 1
    r = invoke("runs", "diff", a)
    assert r.exit_code == 2 and "two or more" in r.output
