"""CLI commands on tiny configs and tiny data: exit codes, files written, error messages."""
import json
import textwrap

import numpy as np
import pytest
import yaml
from tinyrun import TINY, invoke, runner

from netcli.cli import app


def write(tmp_path, text, name="bad.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_train_writes_a_complete_run(tiny):
    r = invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet")
    assert r.exit_code == 0, r.output
    (run,) = list((tiny / "runs" / "tiny").iterdir())
    for f in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints/last.npz", "checkpoints/best.npz"):
        assert (run / f).is_file(), f
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["seed"] == 3 and resolved["schedule"]["type"] == "constant"
    assert resolved["model"]["layers"][0]["stride"] == 1  # defaults filled in
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "epoch", "split", "name", "value", "time"} <= set(records[0])
    assert {r["split"] for r in records} >= {"train_epoch", "val"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 2 * 5  # 38 train samples / 8
    assert "numpy" in summary["versions"]


def test_eval_reports_test_metrics_and_confusion_matrix(tiny):
    invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet")
    r = invoke("eval", tiny / "runs" / "tiny")
    assert r.exit_code == 0, r.output
    (run,) = list((tiny / "runs" / "tiny").iterdir())
    result = json.loads((run / "eval.json").read_text())
    assert result["samples"] == 16
    cm = np.array(result["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == 16
    assert result["metrics"]["accuracy"] == pytest.approx(np.trace(cm) / 16)


def test_regression_eval_reports_the_target_variance_beside_the_mse(tmp_path):
    rng = np.random.default_rng(1)
    for name, n in (("train.npz", 40), ("test.npz", 20)):
        x = rng.normal(size=(n, 3)).astype(np.float32)
        np.savez(tmp_path / name, x=x, y=(x @ [[1.0], [-2.0], [0.5]] + 3.0).astype(np.float32))
    cfg = TINY.replace("classifier", "regressor").replace(
        """    - {type: conv2d, filters: 2, kernel: 3, padding: 1}
    - relu
    - flatten
    - {type: dense, units: 2}""", "    - {type: dense, units: 1}")
    (tmp_path / "reg.yaml").write_text(cfg)
    assert invoke("train", tmp_path / "reg.yaml", "--runs-dir", tmp_path / "runs", "--quiet").exit_code == 0
    r = invoke("eval", tmp_path / "runs" / "tiny")
    assert r.exit_code == 0, r.output
    assert "target_variance" in r.output
    (run,) = list((tmp_path / "runs" / "tiny").iterdir())
    m = json.loads((run / "eval.json").read_text())["metrics"]
    y = np.load(tmp_path / "test.npz")["y"]
    assert m["target_variance"] == pytest.approx(float(y.var()), rel=1e-6)
    assert m["r2"] == pytest.approx(1 - m["mse"] / m["target_variance"])


def test_same_seed_same_metrics(tiny):
    for _ in range(2):
        assert invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet").exit_code == 0
    a, b = sorted((tiny / "runs" / "tiny").iterdir())
    strip = lambda p: [(r["step"], r["name"], r["value"]) for r in map(json.loads, p.read_text().splitlines())]
    assert strip(a / "metrics.jsonl") == strip(b / "metrics.jsonl")


def test_set_overrides_are_applied_and_type_checked(tiny):
    r = invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet",
               "--set", "train.epochs=1", "--set", "optimizer.lr=3e-3")
    assert r.exit_code == 0, r.output
    (run,) = list((tiny / "runs" / "tiny").iterdir())
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 1 and resolved["optimizer"]["lr"] == 3e-3
    r = invoke("validate", tiny / "tiny.yaml", "--set", "train.epochs=many")
    assert r.exit_code == 2
    assert "--set train.epochs=many: Input should be a valid integer" in r.output


def test_validate_and_summary(tiny):
    r = invoke("validate", tiny / "tiny.yaml")
    assert r.exit_code == 0 and "ok" in r.output
    r = invoke("summary", tiny / "tiny.yaml")
    assert r.exit_code == 0, r.output
    assert "conv2d" in r.output and "(2, 4, 4)" in r.output
    assert "20" in r.output  # conv params: 2*1*3*3 + 2


def test_help_lists_every_command():
    r = invoke("--help")
    for cmd in ("train", "eval", "validate", "summary", "data"):
        assert cmd in r.output


BROKEN = [
    # (what, yaml edit applied to TINY, expected message fragment, expected line)
    ("bad yaml", lambda t: t.replace("seed: 3", "seed: [3"), "YAML error", None),
    ("unknown key", lambda t: t.replace("optimizer:", "optimiser:"),
     "optimiser: unknown key 'optimiser' (did you mean 'optimizer'?)", 16),
    ("wrong type", lambda t: t.replace("epochs: 2", "epochs: two"), "train.epochs: Input should be a valid integer", 18),
    ("unknown layer", lambda t: t.replace("type: dense", "type: dence"),
     "model.layers.3.type: unknown layer 'dence' (did you mean 'dense'?)", 15),
    ("unknown layer key", lambda t: t.replace("units: 2", "unitz: 2"),
     "model.layers.3.unitz: unknown key 'unitz' (did you mean 'units'?)", 15),
    ("unknown optimizer", lambda t: t.replace("type: adam", "type: adamm"),
     "optimizer.type: unknown optimizer 'adamm' (did you mean 'adam'?)", 16),
    ("unknown loss", lambda t: t + "loss: cross_entropi\n", "loss: unknown loss 'cross_entropi' (did you mean 'cross_entropy'?)", 19),
    ("unknown dataset", lambda t: t.replace("dataset: npz", "dataset: mnsit"),
     "data.dataset: unknown dataset 'mnsit' (did you mean 'mnist'?)", 4),
    ("negative size", lambda t: t.replace("filters: 2", "filters: -2"), "model.layers.0.filters: Input should be greater than 0", 12),
    ("impossible shape", lambda t: t.replace("kernel: 3, padding: 1", "kernel: 7"), "model.layers.0", 12),
    ("wrong output size", lambda t: t.replace("units: 2", "units: 3"), "2 classes", None),
    ("missing data file", lambda t: t.replace("path: train.npz", "path: nothere.npz"), "nothere.npz", None),
    ("missing model", lambda t: t.split("model:")[0] + "optimizer: {type: adam, lr: 0.01}\n", "model: required key is missing", None),
    ("negative lr", lambda t: t.replace("lr: 0.01", "lr: -1"), "optimizer.lr", 16),
    ("alias", lambda t: t.replace("seed: 3", "seed: &s 3\nother: *s"), "aliases", 3),
    ("python tag", lambda t: t.replace("seed: 3", "seed: !!python/object:os.system 3"), "YAML error", 2),
    ("duplicate key", lambda t: t + "seed: 4\n", "seed: duplicate key", 19),
    ("not a mapping", lambda t: "- just\n- a list\n", "mapping", 1),
    ("empty", lambda t: "", "empty", None),
]


@pytest.mark.parametrize("what,edit,fragment,line", BROKEN, ids=[b[0] for b in BROKEN])
@pytest.mark.parametrize("command", ["validate", "train"])
def test_broken_configs_get_one_clean_line_and_exit_2(tiny, what, edit, fragment, line, command):
    p = write(tiny, edit(TINY))
    args = [command, p] + (["--runs-dir", tiny / "runs", "--quiet"] if command == "train" else [])
    r = invoke(*args)
    assert r.exit_code == 2, (what, r.output)
    assert "Traceback" not in r.output
    assert fragment in r.output, r.output
    if line is not None:
        assert f"{p}:{line}:" in r.output, r.output
    assert not (tiny / "runs").exists() or not any((tiny / "runs").rglob("*.npz"))


def test_every_problem_is_reported_at_once(tiny):
    p = write(tiny, TINY.replace("epochs: 2", "epochs: -1").replace("units: 2", "unitz: 2").replace("lr: 0.01", "lr: x"))
    r = invoke("validate", p)
    assert r.exit_code == 2
    assert "train.epochs" in r.output and "unitz" in r.output and "optimizer.lr" in r.output


def test_missing_config_file(tmp_path):
    r = invoke("validate", tmp_path / "nope.yaml")
    assert r.exit_code == 2 and "no such config file" in r.output


def test_debug_shows_the_traceback(tmp_path):
    r = runner.invoke(app, ["--debug", "validate", str(tmp_path / "nope.yaml")])
    assert r.exit_code != 0 and r.exception is not None


def test_eval_of_a_missing_run(tmp_path):
    r = invoke("eval", tmp_path / "no_run")
    assert r.exit_code == 2 and "no such run directory" in r.output


def test_the_tuned_allocator_reuses_freed_arrays_instead_of_faulting_them_in_again():
    import subprocess
    import sys

    code = textwrap.dedent("""
        import resource, numpy as np
        from netcli.backend import tune_allocator
        def faults():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(20):
                np.ones(2 << 20)  # 16 MiB, freed at once
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        default = faults()
        assert tune_allocator()
        faults()  # the first one lands in the heap
        print(default, faults())
    """)
    default, tuned = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                             check=True).stdout.split())
    assert default >= 20 * 8 and tuned < 20  # by default at least one fault per 2 MiB (huge) page
