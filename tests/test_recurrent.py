"""Recurrent layers and Embedding: initial-state gradients, init, fast paths vs plain math, padding."""
import warnings

import numpy as np
import pytest
from pydantic import ValidationError

from netcli import backend as B
from netcli.gradcheck import check_arrays
from netcli.layers.base import ShapeError
from netcli.layers.context import Context
from netcli.layers.embedding import Embedding
from netcli.layers.recurrent import (GRU, LSTM, RNN, gru_backward, gru_forward, lstm_backward, lstm_forward,
                                     rnn_backward, rnn_forward)

N, T, F, H = 2, 4, 3, 5


def _weights(rng, G, dtype=np.float64, scale=0.5):
    return [(rng.standard_normal(s) * scale).astype(dtype) for s in ((G * H, F), (G * H, H), (G * H,), (G * H,))]


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


# -- initial-state gradients of the pure sequence functions --------------------
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_sequence_functions_gradients_incl_initial_state(kind, rng):
    """Finite differences of L = sum(R ys) + sum(Rh h_T) [+ sum(Rc c_T)] wrt x, h0, (c0) and every weight."""
    G = {"lstm": 4, "gru": 3}.get(kind, 1)
    arrays = {"x": rng.standard_normal((N, T, F)), "h0": rng.standard_normal((N, H))}
    if kind == "lstm":
        arrays["c0"] = rng.standard_normal((N, H))
    names = ["W_ih", "W_hh", "b_ih", "b_hh"]
    arrays.update(zip(names, _weights(rng, G)))
    R, Rh, Rc = rng.standard_normal((N, T, H)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    W = [arrays[n] for n in names]

    def run():
        if kind == "lstm":
            ys, cT, cache = lstm_forward(arrays["x"], arrays["h0"], arrays["c0"], *W)
            return np.sum(R * ys) + np.sum(Rh * ys[:, -1]) + np.sum(Rc * cT), cache
        if kind == "gru":
            ys, cache = gru_forward(arrays["x"], arrays["h0"], *W)
        else:
            ys, cache = rnn_forward(arrays["x"], arrays["h0"], *W, nonlinearity=kind[4:])
        return np.sum(R * ys) + np.sum(Rh * ys[:, -1]), cache

    def backward():
        _, cache = run()
        if kind == "lstm":
            grads = lstm_backward(R, Rh, Rc, cache)
            return dict(zip(["x", "h0", "c0", *names], grads))
        grads = (gru_backward if kind == "gru" else rnn_backward)(R, Rh, cache)
        return dict(zip(["x", "h0", *names], grads))

    report = check_arrays(lambda: float(run()[0]), backward, arrays, rng)
    assert report.ok(1e-6), str(report)


# -- the exp-based gate activations against the plain formulas -----------------
def _plain_lstm(x, W_ih, W_hh, b_ih, b_hh):
    h = c = np.zeros((x.shape[0], W_hh.shape[1]), x.dtype)
    ys = []
    for t in range(x.shape[1]):
        i, f, g, o = np.split(x[:, t] @ W_ih.T + b_ih + h @ W_hh.T + b_hh, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys, 1), c


def _plain_gru(x, W_ih, W_hh, b_ih, b_hh):
    h = np.zeros((x.shape[0], W_hh.shape[1]), x.dtype)
    ys = []
    for t in range(x.shape[1]):
        xr, xz, xn = np.split(x[:, t] @ W_ih.T + b_ih, 3, axis=1)
        hr, hz, hn = np.split(h @ W_hh.T + b_hh, 3, axis=1)
        r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        ys.append(h)
    return np.stack(ys, 1)


@pytest.mark.parametrize("scale", [0.5, 60.0], ids=["moderate", "saturated"])
def test_fast_gate_activations_match_plain_formulas_in_float32(scale, rng):
    """Large pre-activations overflow exp(-x) to inf on purpose: no warning, gates saturate exactly."""
    x = rng.standard_normal((N, T, F)).astype(np.float32)
    h0 = np.zeros((N, H), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        W = _weights(rng, 4, np.float32, scale)
        ys, cT, _ = lstm_forward(x, h0, h0, *W)
        with np.errstate(over="ignore"):
            ys_ref, c_ref = _plain_lstm(x, *W)
        np.testing.assert_allclose(ys, ys_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(cT, c_ref, rtol=1e-5, atol=1e-5)
        W = _weights(rng, 3, np.float32, scale)
        ys, _ = gru_forward(x, h0, *W)
        with np.errstate(over="ignore"):
            ys_ref = _plain_gru(x, *W)
        np.testing.assert_allclose(ys, ys_ref, rtol=1e-5, atol=1e-6)
    assert ys.dtype == cT.dtype == np.float32


# -- layers --------------------------------------------------------------------
@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_float32_stays_float32(cls, bidirectional, rng):
    layer = cls(units=H, return_sequences=True, bidirectional=bidirectional)
    layer.setup((T, F), rng)
    x = rng.standard_normal((N, T, F)).astype(np.float32)
    y = layer.forward(x, training=True)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(p.dtype == np.float32 and layer.grads[k].dtype == np.float32 for k, p in layer.params.items())
    assert y.flags.c_contiguous and y.shape == (N, T, H * (1 + bidirectional))


def test_lstm_forget_bias_initialised_to_one_and_configurable(rng):
    layer = LSTM(units=H, bidirectional=True)
    layer.setup((T, F), rng)
    for suffix in ("", "_reverse"):
        b_ih, b_hh = layer.params[f"bias_ih{suffix}"], layer.params[f"bias_hh{suffix}"]
        np.testing.assert_array_equal(b_ih[H:2 * H] + b_hh[H:2 * H], 1.0)
        assert np.all(np.abs(np.delete(b_ih, np.s_[H:2 * H])) <= 1 / np.sqrt(H))  # other gates: torch init
    layer = LSTM(units=H, forget_bias=0.25, init="glorot_uniform")
    layer.setup((T, F), rng)
    np.testing.assert_array_equal(layer.params["bias_ih"], np.r_[np.zeros(H), np.full(H, 0.25), np.zeros(2 * H)])


def test_torch_style_init_range(rng):
    layer = GRU(units=16)
    layer.setup((T, F), rng)
    for p in layer.params.values():
        assert np.abs(p).max() <= 0.25 and np.abs(p).max() > 0.2  # uniform(-1/sqrt(16), 1/sqrt(16))


def test_rnn_relu_outputs_are_nonnegative_and_states_chain(rng):
    layer = RNN(units=H, nonlinearity="relu", return_sequences=True)
    layer.setup((T, F), rng)
    x = rng.standard_normal((N, T, F))
    y = layer.forward(x, training=True)
    p = layer.params
    h = np.zeros((N, H))
    for t in range(T):
        h = np.maximum(x[:, t] @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"], 0)
        np.testing.assert_allclose(y[:, t], h, rtol=1e-6)


def test_bad_shapes_and_configs(rng):
    with pytest.raises(ShapeError, match=r"\(T, F\)"):
        LSTM(units=4).setup((7,), rng)
    with pytest.raises(ValidationError):
        GRU(units=0)
    with pytest.raises(ValidationError):
        RNN(units=3, nonlinearity="sigmoid")


def test_flops_count_every_gate_matmul(rng):
    layer = LSTM(units=8, bidirectional=True)
    layer.setup((10, 6), rng)
    assert layer.flops() == 2 * 10 * 2 * 4 * 8 * (6 + 8)


# -- embedding -----------------------------------------------------------------
def test_embedding_lookup_and_scatter_add_gradient(rng):
    layer = Embedding(vocab_size=6, dim=3)
    layer.setup((4,), rng)
    tokens = np.array([[1, 2, 1, 5], [0, 1, 5, 5]])
    y = layer.forward(tokens, training=True)
    np.testing.assert_array_equal(y, layer.params["weight"][tokens])
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    expected = np.zeros((6, 3), np.float32)
    for (n, t), tok in np.ndenumerate(tokens):
        expected[tok] += dy[n, t]
    np.testing.assert_allclose(layer.grads["weight"], expected, rtol=1e-6)
    assert not dx.any() and dx.shape == tokens.shape


def test_embedding_padding_row_zero_frozen_and_masked(rng):
    ctx = Context()
    layer = Embedding(vocab_size=5, dim=4, padding_idx=2)
    layer.setup((3,), rng)
    assert not layer.params["weight"][2].any() and layer.params["weight"][[0, 1, 3, 4]].all()
    tokens = np.array([[2, 1, 2], [3, 2, 4]])
    y = layer.forward(tokens, True, ctx)
    np.testing.assert_array_equal(ctx.key_padding_mask, tokens == 2)
    layer.backward(np.ones_like(y))
    assert not layer.grads["weight"][2].any()
    np.testing.assert_array_equal(layer.grads["weight"][:, 0], [0, 1, 0, 1, 1])


def test_embedding_rejects_bad_ids_and_padding_outside_vocab(rng):
    layer = Embedding(vocab_size=5, dim=2)
    layer.setup((3,), rng)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        layer.forward(np.array([[0, 5, 1]]), training=False)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        layer.forward(np.array([[0, -1, 1]]), training=False)
    with pytest.raises(ValidationError, match="outside the vocabulary"):
        Embedding(vocab_size=5, dim=2, padding_idx=5)


def test_embedding_init_is_standard_normal_in_float_dtype(rng):
    layer = Embedding(vocab_size=1000, dim=50)
    layer.setup((3,), rng)
    w = layer.params["weight"]
    assert w.dtype == B.float_dtype()
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_reused_buffers_never_leak_between_calls(cls, rng):
    """Layers reuse their workspaces: outputs and input gradients handed out stay intact, and a
    change of batch size gives the same numbers as a fresh layer."""
    layer = cls(units=H, return_sequences=True, bidirectional=True)
    layer.setup((T, F), np.random.default_rng(1))
    fresh = cls(units=H, return_sequences=True, bidirectional=True)
    fresh.setup((T, F), np.random.default_rng(1))
    x1, x2 = rng.standard_normal((3, T, F)), rng.standard_normal((2, T, F))
    dy1, dy2 = rng.standard_normal((3, T, 2 * H)), rng.standard_normal((2, T, 2 * H))
    y1 = layer.forward(x1, training=True)
    dx1 = layer.backward(dy1)
    y1_kept, dx1_kept = y1.copy(), dx1.copy()
    y2 = layer.forward(x2, training=True)
    dx2 = layer.backward(dy2)
    np.testing.assert_array_equal(y1, y1_kept)
    np.testing.assert_array_equal(dx1, dx1_kept)
    np.testing.assert_array_equal(y2, fresh.forward(x2, training=True))
    np.testing.assert_array_equal(dx2, fresh.backward(dy2))
    np.testing.assert_array_equal(layer.forward(x1, training=True), y1_kept)
