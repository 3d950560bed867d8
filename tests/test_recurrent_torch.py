"""PyTorch parity in float64: RNN (tanh, relu), LSTM, GRU (batch_first, bidirectional on/off) and Embedding.

Weights are copied by name (ours ``weight_ih`` <-> torch ``weight_ih_l0``, ``_reverse`` <->
``_l0_reverse``); outputs, final states and the gradients of the input and every weight and bias
must match.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from netcli import backend as B  # noqa: E402
from netcli.layers.embedding import Embedding  # noqa: E402
from netcli.layers.recurrent import (GRU, LSTM, RNN, gru_backward, gru_forward, lstm_backward,  # noqa: E402
                                     lstm_forward, rnn_backward, rnn_forward)

N, T, F, H = 3, 6, 4, 5
TOL = dict(rtol=1e-6, atol=1e-8)
KINDS = {
    "rnn_tanh": (RNN, {"nonlinearity": "tanh"}, lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw)),
    "rnn_relu": (RNN, {"nonlinearity": "relu"}, lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw)),
    "lstm": (LSTM, {}, lambda **kw: torch.nn.LSTM(**kw)),
    "gru": (GRU, {}, lambda **kw: torch.nn.GRU(**kw)),
}


def _torch_name(name):
    return name.replace("_reverse", "_l0_reverse") if name.endswith("_reverse") else f"{name}_l0"


def _pair(kind, bidirectional, return_sequences, rng):
    cls, options, make_torch = KINDS[kind]
    with B.dtype_scope("float64"):
        layer = cls(units=H, bidirectional=bidirectional, return_sequences=return_sequences, **options)
        layer.setup((T, F), rng)
    tm = make_torch(input_size=F, hidden_size=H, batch_first=True, bidirectional=bidirectional).double()
    for name, p in layer.params.items():
        p[...] = rng.standard_normal(p.shape) * 0.5  # wider than the init range: larger pre-activations
        getattr(tm, _torch_name(name)).data = torch.from_numpy(p.copy())
    assert {_torch_name(n) for n in layer.params} == {n for n, _ in tm.named_parameters()}
    return layer, tm


@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_layer_matches_torch(kind, bidirectional, return_sequences, rng):
    layer, tm = _pair(kind, bidirectional, return_sequences, rng)
    x = rng.standard_normal((N, T, F))
    y = layer.forward(x, training=True)

    xt = torch.from_numpy(x).requires_grad_()
    out, state = tm(xt)
    h_n = state[0] if kind == "lstm" else state  # (dirs, N, H)
    ref = out if return_sequences else h_n.transpose(0, 1).reshape(N, -1)
    np.testing.assert_allclose(y, ref.detach().numpy(), **TOL)

    R = rng.standard_normal(y.shape)
    dx = layer.backward(R)
    (ref * torch.from_numpy(R)).sum().backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    for name, g in layer.grads.items():
        np.testing.assert_allclose(g, getattr(tm, _torch_name(name)).grad.numpy(), **TOL, err_msg=name)


@pytest.mark.parametrize("kind", list(KINDS))
def test_sequence_functions_match_torch_with_initial_state(kind, rng):
    """Non-zero h0 (c0), gradients flowing from every output, h_T and c_T: all must match torch's."""
    layer, tm = _pair(kind, False, True, rng)
    W = [layer.params[n] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    x, h0, c0 = rng.standard_normal((N, T, F)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    R, Rh, Rc = rng.standard_normal((N, T, H)), rng.standard_normal((N, H)), rng.standard_normal((N, H))

    xt, h0t, c0t = (torch.from_numpy(a).requires_grad_() for a in (x, h0, c0))
    if kind == "lstm":
        out, (h_n, c_n) = tm(xt, (h0t[None], c0t[None]))
        ys, cT, cache = lstm_forward(x, h0, c0, *W)
        np.testing.assert_allclose(cT, c_n[0].detach().numpy(), **TOL)
        (out * torch.from_numpy(R)).sum().add((h_n[0] * torch.from_numpy(Rh)).sum()).add(
            (c_n[0] * torch.from_numpy(Rc)).sum()).backward()
        dx, dh0, dc0, *dW = lstm_backward(R, Rh, Rc, cache)
        np.testing.assert_allclose(dc0, c0t.grad.numpy(), **TOL)
    else:
        out, h_n = tm(xt, h0t[None])
        if kind == "gru":
            ys, cache = gru_forward(x, h0, *W)
            dx, dh0, *dW = gru_backward(R, Rh, cache)
        else:
            ys, cache = rnn_forward(x, h0, *W, nonlinearity=kind[4:])
            dx, dh0, *dW = rnn_backward(R, Rh, cache)
        (out * torch.from_numpy(R)).sum().add((h_n[0] * torch.from_numpy(Rh)).sum()).backward()
    np.testing.assert_allclose(ys, out.detach().numpy(), **TOL)
    np.testing.assert_allclose(ys[:, -1], h_n[0].detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(dh0, h0t.grad.numpy(), **TOL)
    for name, g in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), dW):
        np.testing.assert_allclose(g, getattr(tm, _torch_name(name)).grad.numpy(), **TOL, err_msg=name)


def test_lstm_matches_torch_in_float32(rng):
    """The float32 training path (exp-based gates) agrees with torch to float32 precision."""
    layer = LSTM(units=16, return_sequences=True, bidirectional=True)
    layer.setup((T, F), rng)
    tm = torch.nn.LSTM(F, 16, batch_first=True, bidirectional=True)
    for name, p in layer.params.items():
        getattr(tm, _torch_name(name)).data = torch.from_numpy(p.copy())
    x = rng.standard_normal((N, T, F)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    out, _ = tm(xt)
    R = rng.standard_normal(out.shape).astype(np.float32)
    (out * torch.from_numpy(R)).sum().backward()
    np.testing.assert_allclose(layer.forward(x, training=True), out.detach().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(layer.backward(R), xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    for name, g in layer.grads.items():
        np.testing.assert_allclose(g, getattr(tm, _torch_name(name)).grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("padding_idx", [None, 0, 3])
def test_embedding_matches_torch(padding_idx, rng):
    V, D = 7, 4
    with B.dtype_scope("float64"):
        layer = Embedding(vocab_size=V, dim=D, padding_idx=padding_idx)
        layer.setup((T,), rng)
    tm = torch.nn.Embedding(V, D, padding_idx=padding_idx).double()
    tm.weight.data = torch.from_numpy(layer.params["weight"].copy())
    tokens = rng.integers(0, V, (N, T))
    tokens[0, :2] = 0 if padding_idx is None else padding_idx
    y = layer.forward(tokens, training=True)
    out = tm(torch.from_numpy(tokens))
    np.testing.assert_allclose(y, out.detach().numpy(), **TOL)
    R = rng.standard_normal(y.shape)
    layer.backward(R)
    (out * torch.from_numpy(R)).sum().backward()
    np.testing.assert_allclose(layer.grads["weight"], tm.weight.grad.numpy(), **TOL)
