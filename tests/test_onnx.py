"""`netcli export --format onnx`: onnxruntime runs every exportable layer and shipped supervised config as netcli does."""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from registry_cases import registry_cases
from test_hostile import assert_clean_error
from test_plugins import netcli as netcli_process
from tinyrun import TINY, invoke, write_tiny_data

import netcli
from netcli import backend as B
from netcli.gradcheck import make_layer
from netcli.layers.base import walk
from netcli.layers.context import Context
from netcli.onnx import Graph, convert, export_onnx
from netcli.registry import LAYERS
from netcli.runs import find_run

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4


def session(proto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def assert_close(got, want):
    """Within TOL of netcli's float32 output, relative to the output's scale where it exceeds 1."""
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    assert float(np.abs(got - want).max(initial=0)) <= TOL * scale, float(np.abs(got - want).max())


def randomise(layer, rng):
    """Random parameters and running statistics, so a converter that drops or misplaces one fails."""
    for _, sub in walk(layer):
        for p in sub.params.values():
            p[...] = rng.standard_normal(p.shape) * 0.5
        for name, b in sub.buffers.items():
            if name == "running_var":
                b[...] = rng.uniform(0.5, 2.0, b.shape)
            elif name == "running_mean":
                b[...] = rng.standard_normal(b.shape)


def layer_graph(layer, case, ctx_arrays):
    """A graph of the one layer: input "x", side inputs named as the Context's fields, output "y"."""
    g = Graph(layer.type_name)
    x = g.input("x", (None, *case.in_shape), "int64" if case.int_high is not None else "float32")
    if "key_padding_mask" in ctx_arrays:
        g.ctx.key_padding_mask = g.input("key_padding_mask", (None, *ctx_arrays["key_padding_mask"].shape[1:]), "bool")
    if "t" in ctx_arrays:
        g.ctx.t = g.input("t", (None,), "int64")
    g.output(convert(g, layer, x, ""), "y", (None, *layer.out_shape))
    return g.model({"format": "test"})


@pytest.mark.parametrize("name,case", list(registry_cases(LAYERS)))
def test_every_layer_runs_in_onnxruntime_as_in_netcli(name, case):
    assert case is not None, f"layer '{name}' lists no grad_cases"
    rng = np.random.default_rng(0)
    with B.dtype_scope("float32"):
        layer = make_layer(name, case.config)
        layer.setup(case.in_shape, np.random.default_rng(1))
        randomise(layer, rng)
        sess = None
        for batch in (1, 7):  # one exported model: the batch dimension is dynamic
            ctx = {k: v[np.arange(batch) % len(v)] for k, v in case.extra.get("ctx", {}).items()}
            if sess is None:
                sess = session(layer_graph(layer, case, ctx))
            shape = (batch, *case.in_shape)
            x = rng.integers(0, case.int_high, shape) if case.int_high is not None else \
                rng.standard_normal(shape).astype(np.float32)
            want = layer.call(x, False, Context(**ctx))
            feeds = {"x": x, **{k: v.astype(bool if k == "key_padding_mask" else np.int64) for k, v in ctx.items()}}
            assert_close(sess.run(["y"], feeds)[0], want)


def supervised_configs():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if raw["model"]["type"] in ("classifier", "regressor"):
            yield pytest.param(path, id=path.stem)


def tiny_export(path, tmp_path):
    """Train a shipped config for three steps on 200 samples, export it with `netcli export`: (model, proto)."""
    r = invoke("train", path, "--runs-dir", tmp_path / "runs", "--quiet", "--set", "data.limit=200",
               "--set", "train.max_steps=3", "--set", "train.epochs=1", "--set", "schedule=constant")
    assert r.exit_code == 0, r.output
    run = find_run(tmp_path / "runs" / yaml.safe_load(path.read_text())["name"])
    r = invoke("export", run, "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert r.exit_code == 0, r.output
    return netcli.load_run(run), onnx.load(str(tmp_path / "m.onnx"))


@pytest.mark.parametrize("path", list(supervised_configs()))
def test_shipped_supervised_configs_export_and_agree(path, tmp_path):
    """A few training steps of each shipped classifier and regressor config, exported, run at batches 1 and 7."""
    model, proto = tiny_export(path, tmp_path)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["format"] == "netcli-onnx/1" and meta["netcli_version"] == netcli.__version__
    assert json.loads(meta["config"])["name"] == model.config.name
    assert json.loads(meta["data"])["input_shape"] == list(model.info.input_shape)
    assert proto.opset_import[0].version >= 17
    sess, rng = session(proto), np.random.default_rng(0)
    info = model.info
    for batch in (1, 7):
        shape = (batch, *info.input_shape)
        if info.input_dtype.startswith("int"):
            x = rng.integers(0, info.description.get("vocab", 2), shape).astype(info.input_dtype)
        else:
            x = rng.random(shape).astype(np.float32)
        outs = sess.run(None, {"input": x})
        assert_close(outs[0], model.output(x).astype(np.float32))
        if info.task == "classification":
            np.testing.assert_allclose(outs[1], model.predict_proba(x), atol=1e-5)
            assert json.loads(meta["classes"]) == [info.class_name(k) for k in range(info.num_classes)]


def test_classifier_metadata_and_default_path(tiny):
    assert invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet").exit_code == 0
    run = find_run(tiny / "runs" / "tiny")
    path = export_onnx(run)
    assert path == run / "tiny.onnx"
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == ["0", "1"] and meta["model_type"] == "classifier"
    io = json.loads(meta["io"])
    assert io["inputs"] == [{"name": "input", "shape": ["N", 1, 4, 4]}]
    assert [o["name"] for o in io["outputs"]] == ["logits", "probabilities"]
    assert {i.name for i in proto.graph.initializer} >= {"net.0.W", "net.0.b", "net.3.W", "net.3.b"}


def test_unexportable_layer_is_one_line_naming_it(tmp_path):
    """A layer with no converter (examples/swish.py, a plugin's) stops the export with one line: its type and path.

    In a subprocess, as tests/test_plugins.py does: a plugin registers its layer for the whole process."""
    write_tiny_data(tmp_path)
    (tmp_path / "swish.py").write_text((ROOT / "examples" / "swish.py").read_text())
    (tmp_path / "tiny.yaml").write_text(TINY.replace("seed: 3\n", "seed: 3\nplugins: [swish.py]\n")
                                        .replace("    - relu\n", "    - swish\n"))
    r = netcli_process("train", "tiny.yaml", "-q", "--set", "train.max_steps=2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = netcli_process("--plugin", "swish.py", "export", "runs/tiny", "--format", "onnx", "-o", "x.onnx", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: layer 'swish' at net.1 cannot be exported to ONNX") and \
        len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_missing_onnx_is_one_line_naming_the_extra(tiny, monkeypatch):
    assert invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet").exit_code == 0
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # as if not installed
    assert_clean_error(invoke("export", tiny / "runs" / "tiny", "--format", "onnx"), "pip install 'netcli[export]'")
