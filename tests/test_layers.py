"""Behaviour of the core layers: train vs eval, shape errors, fast paths against plain versions."""
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from netcli import backend as B
from netcli.gradcheck import make_layer
from netcli.layers import ShapeError
from netcli.layers.base import named_params
from netcli.layers.container import Sequential
from netcli.models import MODELS


def build(layer_type, in_shape, dtype="float64", seed=0, **config):
    with B.dtype_scope(dtype):
        layer = make_layer(layer_type, config)
        layer.setup(in_shape, np.random.default_rng(seed))
    return layer


# -- train vs eval ------------------------------------------------------------

def test_dropout_zeroes_and_rescales_in_training_and_is_the_identity_in_eval():
    x = np.random.default_rng(0).standard_normal((8, 50))
    layer = build("dropout", (50,), rate=0.25)
    y = layer.forward(x, training=True)
    dropped = y == 0
    assert 0.15 < dropped.mean() < 0.35
    np.testing.assert_allclose(y[~dropped], x[~dropped] / 0.75)
    dy = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(dy) == 0, dropped)  # same mask on the way back
    assert not np.array_equal(layer.forward(x, training=True), y)  # a fresh mask each step
    assert layer.forward(x, training=False) is x
    assert layer.backward(dy) is dy


def test_dropout_masks_come_from_the_layer_generator():
    x = np.ones((4, 30))
    a, b = build("dropout", (30,), seed=5), build("dropout", (30,), seed=5)
    np.testing.assert_array_equal(a.forward(x, True), b.forward(x, True))


def test_batchnorm_normalises_with_batch_stats_in_training_and_running_stats_in_eval():
    rng = np.random.default_rng(0)
    layer = build("batchnorm", (3, 4, 4), momentum=0.5)
    shift, scale = np.array([5.0, -2.0, 0.0]), np.array([2.0, 0.5, 1.0])

    def batch():
        return shift[:, None, None] + scale[:, None, None] * rng.standard_normal((16, 3, 4, 4))

    for _ in range(30):
        y = layer.forward(batch(), training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1, atol=1e-4)
    np.testing.assert_allclose(layer.buffers["running_mean"], shift, atol=0.15)
    np.testing.assert_allclose(layer.buffers["running_var"], scale**2, rtol=0.15)

    x = batch()
    train_out, eval_out = layer.forward(x, training=True), layer.forward(x, training=False)
    assert not np.allclose(train_out, eval_out)
    rm, rv = layer.buffers["running_mean"], layer.buffers["running_var"]
    expected = (x - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5)
    np.testing.assert_allclose(eval_out, expected)

    before = rm.copy()
    layer.forward(x + 100, training=False)
    np.testing.assert_array_equal(layer.buffers["running_mean"], before)  # eval never updates the statistics


def test_batchnorm_statistics_follow_the_feature_axis_of_each_input_rank():
    rng = np.random.default_rng(0)
    for in_shape, feature_axis in [((4,), 1), ((5, 4), 2), ((4, 3, 3), 1)]:
        layer = build("batchnorm", in_shape)
        x = rng.standard_normal((6, *in_shape)) * np.arange(1, 5).reshape([-1 if a == feature_axis else 1
                                                                           for a in range(len(in_shape) + 1)])
        y = layer.forward(x, True)
        other = tuple(a for a in range(y.ndim) if a != feature_axis)
        np.testing.assert_allclose(y.std(axis=other), 1, atol=1e-3)
        assert layer.buffers["running_mean"].shape == (4,)


def test_layernorm_normalises_each_sample_over_its_trailing_axes():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)) * 7 + 2
    y = build("layernorm", (4, 5), normalized_dims=2).forward(x, True)
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(1, 2)), 1, atol=1e-5)


# -- shapes -------------------------------------------------------------------

@pytest.mark.parametrize("layer_type,in_shape,config,match", [
    ("conv2d", (1, 4, 4), {"filters": 2, "kernel": 5}, "larger than the padded input"),
    ("conv2d", (1, 4, 4), {"filters": 2, "kernel": [3, 7], "padding": 1}, "larger than the padded input"),
    ("conv2d", (16,), {"filters": 2, "kernel": 3}, r"\(C, H, W\)"),
    ("maxpool2d", (1, 3, 3), {"size": 4}, "larger than the padded input"),
    ("avgpool2d", (1, 6, 6), {"size": 2, "padding": 2}, "more than half"),
    ("global_avg_pool", (8,), {}, r"\(C, H, W\)"),
    ("reshape", (4, 6), {"shape": [5, 5]}, "24 entries"),
    ("reshape", (4, 6), {"shape": [5, -1]}, "cannot infer"),
    ("layernorm", (4,), {"normalized_dims": 2}, "at least 2"),
    ("batchnorm", (1, 2, 3, 4), {}, "batchnorm takes"),
])
def test_impossible_shapes_raise_shape_errors(layer_type, in_shape, config, match):
    with pytest.raises(ShapeError, match=match):
        build(layer_type, in_shape, **config)


@pytest.mark.parametrize("layer_type,config", [
    ("conv2d", {"filters": 2, "kernel": 3, "stride": 2, "padding": "same"}),
    ("conv2d", {"filters": 0, "kernel": 3}),
    ("conv2d", {"filters": 2, "kernel": [3, 0]}),
    ("dropout", {"rate": 1.0}),
    ("reshape", {"shape": [-1, -1]}),
    ("leaky_relu", {"negative_slope": -1}),
    ("batchnorm", {"momentum": 0}),
])
def test_invalid_options_are_config_errors(layer_type, config):
    with pytest.raises(ValidationError):
        make_layer(layer_type, config)


@pytest.mark.parametrize("config,in_shape,out_shape", [
    ({"filters": 8, "kernel": 3, "padding": 1}, (1, 28, 28), (8, 28, 28)),
    ({"filters": 4, "kernel": 3, "stride": 2}, (2, 9, 8), (4, 4, 3)),
    ({"filters": 4, "kernel": [4, 2], "padding": "same"}, (2, 7, 5), (4, 7, 5)),
])
def test_conv_output_shape_and_flops(config, in_shape, out_shape):
    layer = build("conv2d", in_shape, **config)
    assert layer.out_shape == out_shape
    kh, kw = layer.params["W"].shape[2:]
    assert layer.flops() == 2 * np.prod(out_shape) * in_shape[0] * kh * kw
    assert layer.forward(np.zeros((2, *in_shape)), True).shape == (2, *out_shape)


def test_flatten_and_reshape_keep_the_batch_axis():
    x = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    flat = build("flatten", (3, 4))
    np.testing.assert_array_equal(flat.forward(x, True), x.reshape(2, 12))
    reshape = build("reshape", (3, 4), shape=[-1, 2])
    assert reshape.out_shape == (6, 2)
    np.testing.assert_array_equal(reshape.forward(x, True), x.reshape(2, 6, 2))
    np.testing.assert_array_equal(reshape.backward(x.reshape(2, 6, 2)), x)


# -- fast paths against plain versions -----------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 2, 2)])
def test_fast_2x2_maxpool_equals_the_general_path(shape):
    rng = np.random.default_rng(0)
    x = np.round(np.maximum(rng.standard_normal(shape), 0), 1)  # many exact ties
    dy = rng.standard_normal((shape[0], shape[1], shape[2] // 2, shape[3] // 2))
    fast, general = build("maxpool2d", shape[1:], size=2), build("maxpool2d", shape[1:], size=2)
    general.use_fast_path = False
    np.testing.assert_array_equal(fast.forward(x, True), general.forward(x, True))
    assert fast.fast and not general.fast
    np.testing.assert_array_equal(fast.backward(dy), general.backward(dy))


def naive_conv(x, w, b, stride, pads):
    """Direct loops over every output position: y, and a function giving (dx, dw, db) from dy."""
    (sh, sw), ((pt, pb), (pl, pr)) = stride, pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, o, (kh, kw) = len(x), len(w), w.shape[2:]
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]  # (N, C, kh, kw)
            y[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w) + b

    def grads(dy):
        dxp, dw = np.zeros_like(xp), np.zeros_like(w)
        for i in range(oh):
            for j in range(ow):
                rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
                dxp[:, :, rows, cols] += np.einsum("no,ockl->nckl", dy[:, :, i, j], w)
                dw += np.einsum("no,nckl->ockl", dy[:, :, i, j], xp[:, :, rows, cols])
        return dxp[:, :, pt:xp.shape[2] - pb, pl:xp.shape[3] - pr], dw, dy.sum(axis=(0, 2, 3))

    return y, grads


@pytest.mark.parametrize("config,in_shape", [
    ({"filters": 3, "kernel": 3}, (2, 5, 6)),
    ({"filters": 2, "kernel": [2, 3], "stride": [2, 1], "padding": [1, 2]}, (3, 6, 5)),
    ({"filters": 2, "kernel": 2, "padding": "same"}, (1, 4, 5)),
    ({"filters": 3, "kernel": 3, "stride": 2, "padding": 1}, (9, 7, 7)),
])
@pytest.mark.parametrize("layout", ["channel_last", "channel_last_micro_batches", "channel_first"])
def test_im2col_conv_equals_a_naive_loop_conv(config, in_shape, layout, monkeypatch):
    from netcli.layers.conv import Conv2D

    monkeypatch.setattr(Conv2D, "channel_first_below", 1000 if layout == "channel_first" else 0)
    if layout == "channel_last_micro_batches":
        monkeypatch.setattr(Conv2D, "micro_batch_bytes", 1)  # one sample at a time
    rng = np.random.default_rng(0)
    layer = build("conv2d", in_shape, **config)
    layer.params["b"][...] = rng.standard_normal(layer.params["b"].shape)
    x = rng.standard_normal((3, *in_shape))
    stride = (config.get("stride", 1),) * 2 if isinstance(config.get("stride", 1), int) else config["stride"]
    y_ref, grads = naive_conv(x, layer.params["W"], layer.params["b"], stride, layer.pads)
    np.testing.assert_allclose(layer.forward(x, True), y_ref, atol=1e-12)
    if layout == "channel_last_micro_batches":
        assert len(layer.cols) == 3
    dy = rng.standard_normal(y_ref.shape)
    dx_ref, dw_ref, db_ref = grads(dy)
    np.testing.assert_allclose(layer.backward(dy), dx_ref, atol=1e-12)
    np.testing.assert_allclose(layer.grads["W"], dw_ref, atol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], db_ref, atol=1e-12)


def test_gradients_accumulate_across_backward_calls():
    rng = np.random.default_rng(0)
    x, layer = rng.standard_normal((2, 2, 5, 5)), build("conv2d", (2, 5, 5), filters=2, kernel=3)
    dy = rng.standard_normal((2, 2, 3, 3))
    layer.forward(x, True)
    layer.backward(dy)
    once = layer.grads["W"].copy()
    layer.backward(dy)
    np.testing.assert_allclose(layer.grads["W"], 2 * once)


# -- numerics and dtypes ---------------------------------------------------------

def test_sigmoid_and_softmax_are_stable_for_huge_inputs():
    x = np.array([[-1e4, 0.0, 1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(build("sigmoid", (3,)).forward(x, True), [[0, 0.5, 1]])
        np.testing.assert_allclose(build("softmax", (3,)).forward(x, True), [[0, 0, 1]])
        np.testing.assert_allclose(build("softmax", (3,)).forward(x + 1e6, True), [[0, 0, 1]])


def test_softmax_rows_sum_to_one_and_its_gradient_is_orthogonal_to_constants():
    layer = build("softmax", (5,))
    y = layer.forward(np.random.default_rng(0).standard_normal((3, 5)), True)
    np.testing.assert_allclose(y.sum(axis=-1), 1)
    np.testing.assert_allclose(layer.backward(np.ones((3, 5))), 0, atol=1e-15)  # softmax(x + c) = softmax(x)


@pytest.mark.parametrize("layer_type,in_shape,config", [
    ("conv2d", (2, 6, 6), {"filters": 3, "kernel": 3, "padding": 1}),
    ("maxpool2d", (2, 6, 6), {}),
    ("maxpool2d", (2, 5, 5), {"size": 3, "stride": 2, "padding": 1}),
    ("avgpool2d", (2, 6, 6), {}),
    ("global_avg_pool", (2, 6, 6), {}),
    ("batchnorm", (2, 6, 6), {}),
    ("layernorm", (6,), {}),
    ("dropout", (6,), {}),
    ("gelu", (6,), {}),
    ("leaky_relu", (6,), {}),
    ("sigmoid", (6,), {}),
    ("softmax", (6,), {}),
])
def test_float32_stays_float32(layer_type, in_shape, config):
    layer = build(layer_type, in_shape, dtype="float32", **config)
    assert all(p.dtype == np.float32 for p in [*layer.params.values(), *layer.buffers.values()])
    x = np.random.default_rng(0).standard_normal((2, *in_shape)).astype(np.float32)
    y = layer.forward(x, True)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads.values())


def _sequential(layers, needs_input_grad, in_shape):
    net = Sequential(Sequential.Config(layers=layers))
    net.needs_input_grad = needs_input_grad
    net.setup(in_shape, np.random.default_rng(0))
    return net


@pytest.mark.parametrize("layers, flags", [
    ([{"type": "conv2d", "filters": 2, "kernel": 3}, "relu", "flatten", {"type": "dense", "units": 3}],
     [False, True, True, True]),
    (["flatten", {"type": "dense", "units": 4}, "relu", {"type": "dense", "units": 3}], [False, False, True, True]),
])
def test_a_network_on_data_skips_its_input_gradient_and_nothing_else(layers, flags):
    x = np.random.default_rng(1).normal(size=(4, 2, 5, 5))
    dy = np.random.default_rng(2).normal(size=(4, 3))
    with B.dtype_scope("float64"):
        full, skipping = _sequential(layers, True, x.shape[1:]), _sequential(layers, False, x.shape[1:])
        assert [layer.needs_input_grad for layer in skipping.layers] == flags
        for net in (full, skipping):
            net.forward(x, training=True)
        assert full.backward(dy).shape == x.shape
        assert skipping.backward(dy) is None
    for (name, _, g_full), (_, _, g_skip) in zip(named_params(full), named_params(skipping)):
        np.testing.assert_array_equal(g_full, g_skip, err_msg=name)


def test_models_skip_the_gradient_of_data_but_not_of_a_latent():
    info = SimpleNamespace(input_shape=(6,), target_shape=(6,), task="generative", num_classes=None)
    mlp = [{"type": "dense", "units": 4}]
    vae = MODELS.get("vae")(MODELS.get("vae").Config(latent_dim=2, encoder=mlp, decoder=[{"type": "dense", "units": 6}]))
    vae.setup(info, np.random.default_rng(0))
    assert not vae.encoder.layers[0].needs_input_grad and vae.decoder.layers[0].needs_input_grad


def test_weights_larger_than_free_memory_are_refused_before_any_is_drawn(monkeypatch):
    monkeypatch.setattr(B, "available_memory", lambda: 1 << 20)
    layer = make_layer("dense", {"units": 1000})
    with pytest.raises(MemoryError, match=r"weights of shape \(784, 1000\) need 12.0 MiB; 1.0 MiB of memory is available"):
        layer.setup((784,), np.random.default_rng(0))
    monkeypatch.setattr(B, "available_memory", lambda: None)  # unknown (not Linux): no check
    layer.setup((784,), np.random.default_rng(0))
