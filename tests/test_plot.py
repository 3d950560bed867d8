"""`netcli plot`: curves from metrics.jsonl, confusion matrices from eval.json, PNG files; the plot extra."""
import json
import sys

import numpy as np
from PIL import Image
from tinyrun import invoke

from netcli.plot import curves


def trained(tiny, *sets):
    args = ["train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet", "--set", "train.log_every=2"]
    for s in sets:
        args += ["--set", s]
    assert invoke(*args).exit_code == 0


def test_curves_are_the_logged_records(tiny):
    trained(tiny)
    (run,) = (tiny / "runs" / "tiny").iterdir()
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    c = curves(run, "step")
    assert set(c) == {"loss", "accuracy"}  # lr is left out; val_loss is the val curve of loss
    assert c["loss"]["train"] == ([r["step"] for r in logged if r["split"] == "train" and r["name"] == "loss"],
                                  [r["value"] for r in logged if r["split"] == "train" and r["name"] == "loss"])
    assert c["accuracy"]["val"][1] == [r["value"] for r in logged if r["name"] == "val_accuracy"]
    by_epoch = curves(run, "epoch")
    assert by_epoch["loss"]["train"][0] == [1, 2] and by_epoch["loss"]["val"][0] == [1, 2]


def test_plot_writes_pngs_with_a_confusion_matrix_row_once_evaluated(tiny):
    trained(tiny)
    trained(tiny, "optimizer.lr=0.05")
    a, b = sorted((tiny / "runs" / "tiny").iterdir())
    r = invoke("plot", a, b, "-o", tiny / "two.png")
    assert r.exit_code == 0 and "two.png" in r.output, r.output
    one_row = Image.open(tiny / "two.png")
    assert invoke("eval", a).exit_code == 0
    assert invoke("plot", a, b, "-o", tiny / "evaluated.png", "--by", "epoch").exit_code == 0
    two_rows = Image.open(tiny / "evaluated.png")
    assert two_rows.width == one_row.width and two_rows.height > 1.8 * one_row.height
    px = np.asarray(two_rows.convert("RGB"))
    assert px.std() > 10  # drawn, not blank
    assert invoke("plot", a).exit_code == 0 and (a / "curves.png").is_file()  # one run: its curves.png
    r = invoke("plot", a, "--metric", "f1")
    assert r.exit_code == 2 and "not logged" in r.output and "accuracy" in r.output


def test_missing_matplotlib_is_one_line_naming_the_extra(tiny, monkeypatch):
    trained(tiny)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = invoke("plot", tiny / "runs" / "tiny")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == ["error: this needs matplotlib, which is not installed: "
                                             "pip install 'netcli[plot]'"]
