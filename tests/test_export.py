"""`netcli export --format safetensors`: stable names, config and data description in the metadata."""
import json

import numpy as np
from safetensors import safe_open
from test_hostile import assert_clean_error
from tinyrun import invoke

import netcli
from netcli.runs import find_run

MLP = """\
name: mlp
seed: 1
data: {dataset: npz, path: train.npz, test_path: test.npz, batch_size: 8}
model:
  type: classifier
  layers: [flatten, {type: dense, units: 8}, relu, {type: dense, units: 2}]
optimizer: {type: adam, lr: 0.01}
train: {epochs: 2}
"""


def test_safetensors_rebuilds_predictions_and_initialises_a_run(tiny):
    (tiny / "mlp.yaml").write_text(MLP)
    assert invoke("train", tiny / "mlp.yaml", "--runs-dir", tiny / "runs", "--quiet").exit_code == 0
    run = find_run(tiny / "runs" / "mlp")
    r = invoke("export", run, "--format", "safetensors", "-o", tiny / "mlp.safetensors")
    assert r.exit_code == 0, r.output
    x = np.load(tiny / "test.npz")["x"]
    with safe_open(str(tiny / "mlp.safetensors"), framework="numpy") as f:  # the safetensors library alone
        t = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    assert sorted(t) == ["param/net.1.W", "param/net.1.b", "param/net.3.W",
                         "param/net.3.b"]
    assert json.loads(meta["config"])["name"] == "mlp" and json.loads(meta["data"])["input_shape"] == [1, 4, 4]
    h = np.maximum(x.reshape(len(x), -1) @ t["param/net.1.W"] + t["param/net.1.b"], 0)
    logits = h @ t["param/net.3.W"] + t["param/net.3.b"]
    model = netcli.load_run(run)
    np.testing.assert_allclose(logits, model.output(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(netcli.load_run(tiny / "mlp.safetensors").output(x), model.output(x))
    # --init-from takes the file: with a vanishing lr the new run keeps those weights
    r = invoke("train", tiny / "mlp.yaml", "--runs-dir", tiny / "runs2", "--quiet", "--init-from",
               tiny / "mlp.safetensors", "--set", "optimizer.lr=1e-12", "--set", "train.epochs=1")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(netcli.load_run(tiny / "runs2" / "mlp", checkpoint="last").output(x), model.output(x),
                               rtol=1e-5, atol=1e-6)
    (tiny / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    assert_clean_error(invoke("predict", tiny / "bad.safetensors", tiny / "test.npz"), "not a netcli safetensors export")


def test_missing_extra_is_one_line_naming_it(tiny, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "safetensors", None)  # as if not installed
    assert_clean_error(invoke("export", tiny, "--format", "safetensors"), "pip install 'netcli[export]'")
