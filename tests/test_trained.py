"""Self-describing checkpoints: a trained run loads and predicts with no data set (`netcli.load_run`)."""
import json

import numpy as np
import pytest
from tinyrun import invoke

import netcli
from netcli.data import DataInfo, load_data, parse_data_config
from netcli.errors import CheckpointError, UserError
from netcli.runs import find_run, load_checkpoint, save_checkpoint
from netcli.app.evaluate import load_run as load_experiment


@pytest.fixture
def tiny_run(tiny):
    assert invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet").exit_code == 0
    return find_run(tiny / "runs" / "tiny")


def test_checkpoint_describes_its_data(tiny_run):
    _, meta = load_checkpoint(tiny_run / "checkpoints" / "best.npz")
    info = DataInfo.model_validate(meta["data"])
    assert (info.task, info.num_classes, info.input_shape, info.target_shape) == ("classification", 2, (1, 4, 4), ())
    assert meta["config"]["name"] == "tiny" and meta["netcli_version"] == netcli.__version__


def test_loads_and_predicts_without_the_data(tiny_run):
    data = {p.name: np.load(p) for p in tiny_run.parent.parent.parent.glob("*.npz")}
    _, exp = load_experiment(tiny_run)  # with the data: the reference
    for p in tiny_run.parent.parent.parent.glob("*.npz"):
        p.unlink()  # from here on no data set can be read
    model = netcli.load_run(tiny_run.parent)  # runs/tiny: its newest run
    x, y = data["test.npz"]["x"], data["test.npz"]["y"]
    logits = exp.model.predict(x)
    np.testing.assert_array_equal(model.predict(x), logits.argmax(-1))
    np.testing.assert_allclose(model.predict_proba(x).sum(-1), 1.0)
    assert (model.predict_proba(x).argmax(-1) == model.predict(x)).all()
    acc = exp.model.eval_metrics(x, y)["accuracy"]
    assert np.mean(model.predict(x) == y) == pytest.approx(acc)
    assert model.predict(x[0]).shape == (1,)  # one sample of the input shape is a batch of one
    with pytest.raises(UserError, match=r"input: shape \(3, 16\) does not fit the model, which takes \(1, 4, 4\)"):
        model.predict(x.reshape(len(x), -1)[:3])
    with pytest.raises(UserError, match="holds NaN"):
        model.predict(np.full((2, 1, 4, 4), np.nan))
    with pytest.raises(UserError, match="sample needs a model that can sample .*; a classifier model cannot"):
        model.sample(4)


def test_last_checkpoint_and_checkpoint_file(tiny_run):
    last = netcli.load_run(tiny_run, checkpoint="last")
    by_file = netcli.load_run(tiny_run / "checkpoints" / "last.npz")
    x = np.random.default_rng(1).normal(size=(7, 1, 4, 4))
    np.testing.assert_array_equal(last.predict_proba(x), by_file.predict_proba(x))


def test_checkpoint_without_description_is_refused(tiny_run):
    path = tiny_run / "checkpoints" / "best.npz"
    arrays, meta = load_checkpoint(path)
    del meta["data"], meta["format"]
    save_checkpoint(path, arrays, meta)
    with pytest.raises(CheckpointError, match="its config or data description is missing or invalid"):
        netcli.load_run(tiny_run)


def test_csv_description_names_columns_and_classes(tmp_path):
    (tmp_path / "t.csv").write_text("b,a,kind\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,dog\n9,1,emu\n")
    cfg = parse_data_config({"dataset": "csv", "path": str(tmp_path / "t.csv"), "label_column": "kind",
                             "val_fraction": 0.2})
    info = load_data(cfg, 0).info()
    assert info.class_names == ["cat", "dog", "emu"] and info.num_classes == 3
    assert info.description == {"dataset": "csv", "kind": "table", "columns": ["b", "a"], "label_column": "kind"}
    assert json.loads(info.model_dump_json())["input_shape"] == [2]
