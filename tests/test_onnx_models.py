"""ONNX export of the generative models (VAE and autoencoder decoders as generators, the DDPM denoiser
as a network of (x, t)) and of a token classifier whose padding mask the graph computes itself."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_onnx import assert_close, randomise, session, tiny_export
from tinyrun import invoke

import netcli
from netcli.gradcheck import make_layer
from netcli.layers.context import Context
from netcli.onnx import ExportError, Graph, convert, convert_model
from netcli.registry import MODELS
from netcli.runs import find_run

ROOT = Path(__file__).resolve().parents[1]


def io_of(proto):
    return json.loads({p.key: p.value for p in proto.metadata_props}["io"])


@pytest.mark.parametrize("name", ["mnist_vae", "mnist_autoencoder"])
def test_decoders_export_as_generators(name, tmp_path):
    """latent (N, L) -> image (N, 784) in [0, 1]: the VAE's decode(z), the autoencoder's pixels(decoder(z))."""
    trained, proto = tiny_export(ROOT / "configs" / f"{name}.yaml", tmp_path)
    model = trained.model
    L = model.decoder.in_shape[0]
    assert io_of(proto) == {"inputs": [{"name": "latent", "shape": ["N", L]}],
                            "outputs": [{"name": "image", "shape": ["N", 784]}]}
    sess, rng = session(proto), np.random.default_rng(0)
    for batch in (1, 7):
        z = rng.standard_normal((batch, L)).astype(np.float32)
        want = model.decode(z) if name == "mnist_vae" else model.pixels(model.decoder.forward(z, training=False))
        assert_close(sess.run(["image"], {"latent": z})[0], want.astype(np.float32))


@pytest.mark.parametrize("name", ["mnist_ddpm", "mnist_ddpm_quick"])
def test_ddpm_denoiser_exports_as_a_network_of_x_and_t(name, tmp_path):
    """(x_t, t) -> the predicted noise of the averaged weights (those that sample), any t per sample."""
    trained, proto = tiny_export(ROOT / "configs" / f"{name}.yaml", tmp_path)
    model = trained.model
    assert io_of(proto) == {"inputs": [{"name": "input", "shape": ["N", 1, 28, 28]}, {"name": "t", "shape": ["N"]}],
                            "outputs": [{"name": "noise", "shape": ["N", 1, 28, 28]}]}
    params = {i.name for i in proto.graph.initializer if i.name.startswith("denoiser")}
    assert params and all(n.startswith("denoiser_ema.0.") for n in params)  # the EMA copy, not the trained one
    sess, rng = session(proto), np.random.default_rng(0)
    for batch in (1, 7):
        x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
        t = rng.integers(0, model.config.timesteps, batch)
        want = model.ema_net.forward(x, False, Context(t=t))
        assert_close(sess.run(["noise"], {"input": x, "t": t})[0], want)
    # one DDIM step from the exported network equals the model's own step
    x, t, t_prev = rng.standard_normal((3, 1, 28, 28)).astype(np.float32), 700, 400
    eps = sess.run(["noise"], {"input": x, "t": np.full(3, t)})[0]
    ab, ab_prev = model.alphas_cumprod[t], model.alphas_cumprod[t_prev]
    x0 = np.clip((x - np.sqrt(1 - ab) * eps) / np.sqrt(ab), -1, 1)
    eps = (x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
    assert_close((np.sqrt(ab_prev) * x0 + np.sqrt(1 - ab_prev) * eps).astype(np.float32), model.ddim_step(x, t, t_prev))


PADDED = """\
name: padded
seed: 0
data: {dataset: npz, path: train.npz, batch_size: 8}
model:
  type: classifier
  layers:
    - {type: embedding, vocab_size: 6, dim: 8, padding_idx: 0}    # writes the key padding mask (ids == 0)
    - {type: class_token}                                          # the mask gets an unpadded column in front
    - {type: learned_position}
    - {type: transformer_encoder, blocks: 1, heads: 2, ffn: 16, dropout: 0.0}
    - {type: multihead_attention, heads: 2, causal: true}
    - {type: mean_pool}                                            # over the unpadded tokens
    - {type: dense, units: 3}
optimizer: {type: adam, lr: 0.01}
train: {epochs: 1}
"""


def test_padding_mask_is_computed_in_the_graph(tmp_path):
    """Token ids with padding: the graph derives the key padding mask from the ids as the embedding does,
    shifts it past the class token, and masks attention and the mean with it."""
    rng = np.random.default_rng(0)
    x = rng.integers(1, 6, (40, 6)).astype(np.float32)  # an npz of numbers: ids as floats, as training reads them
    lengths = rng.integers(0, 7, 40)  # some rows all padding
    x[np.arange(6) >= lengths[:, None]] = 0
    np.savez(tmp_path / "train.npz", x=x, y=rng.integers(0, 3, 40))
    (tmp_path / "padded.yaml").write_text(PADDED)
    r = invoke("train", tmp_path / "padded.yaml", "--runs-dir", tmp_path / "runs", "--quiet")
    assert r.exit_code == 0, r.output
    run = find_run(tmp_path / "runs" / "padded")
    assert invoke("export", run, "--format", "onnx", "-o", tmp_path / "p.onnx").exit_code == 0
    proto = onnx.load(str(tmp_path / "p.onnx"))
    assert [i["name"] for i in io_of(proto)["inputs"]] == ["input"]  # the mask is no input: the ids say it
    trained, sess = netcli.load_run(run), session(proto)
    for rows in (slice(0, 1), slice(0, 7), slice(None)):
        assert_close(sess.run(["logits"], {"input": x[rows]})[0], trained.output(x[rows]).astype(np.float32))


def test_time_conditioned_layer_without_timesteps_is_one_line_naming_it():
    """A denoiser layer outside a ddpm model has no t to read: the export names the layer and its place."""
    layer = make_layer("time_mlp_denoiser", {"units": [4], "time_dim": 4})
    layer.setup((3,), np.random.default_rng(0))
    g = Graph("x")
    with pytest.raises(ExportError) as e:
        convert(g, layer, g.input("input", (None, 3)), "net.0.")
    assert str(e.value) == ("time_mlp_denoiser at net.0 needs the diffusion timesteps "
                            "(export it in a ddpm model, whose graph takes t)")


def generative_cases():
    for name in ("vae", "autoencoder", "ddpm"):
        for i, case in enumerate(MODELS.get(name).grad_cases()):
            yield pytest.param(name, case, {}, id=f"{name}-{i}")
    yield pytest.param("ddpm", MODELS.get("ddpm").grad_cases()[1], {"ema_decay": 0.0}, id="ddpm-no-ema")


@pytest.mark.parametrize("name,case,options", list(generative_cases()))
def test_generative_model_cases_export_with_random_weights(name, case, options):
    """Each generative type's own cases, every weight random (the DDPM's averaged copy drawn apart from the
    trained one, so exporting the wrong one fails), at batch sizes 1 and 7."""
    model = MODELS.build({"type": name, **case.config, **options})
    model.setup(case, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    nets = [model.networks()[k] for k in model.networks()] + ([model.ema_net] if name == "ddpm" else [])
    for net in nets:
        randomise(net, rng)
    g = Graph(name)
    convert_model(g, model, case)
    sess = session(g.model({"format": "test"}))
    for batch in (1, 7):
        if name == "ddpm":
            x = rng.standard_normal((batch, *case.input_shape)).astype(np.float32)
            t = rng.integers(0, model.config.timesteps, batch)
            got, want = sess.run(["noise"], {"input": x, "t": t})[0], model.ema_net.forward(x, False, Context(t=t))
        else:
            z = rng.standard_normal((batch, model.decoder.in_shape[0])).astype(np.float32)
            got = sess.run(["image"], {"latent": z})[0]
            want = model.decode(z) if name == "vae" else model.pixels(model.decoder.forward(z, training=False))
        assert_close(got, want.astype(np.float32))
