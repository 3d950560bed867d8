"""Recurrent layers over batch-first sequences (N, T, F): Elman RNN, LSTM and GRU.

Each layer runs one sequence function per direction. The math lives in pure
functions, ``rnn_/lstm_/gru_forward`` and ``..._backward``, which take the
initial state and the weights as arguments, so gradients with respect to the
initial state can be checked directly; the Layer classes hold the params and
the cache.

Weights have PyTorch's names, shapes and gate order, so they move between the
two by name (torch's ``num_layers=1`` modules; stack layers in the config to
get more):

    netcli param         shape        torch.nn.RNN / LSTM / GRU
    weight_ih            (G*H, F)     weight_ih_l0
    weight_hh            (G*H, H)     weight_hh_l0
    bias_ih              (G*H,)       bias_ih_l0
    bias_hh              (G*H,)       bias_hh_l0
    <name>_reverse                    <name>_l0_reverse   (bidirectional)

G = 1 for the RNN, 4 for the LSTM (gates i, f, g, o), 3 for the GRU (r, z, n).
The GRU follows PyTorch: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
h' = (1 - z) * n + z * h (the reset gate scales the hidden projection,
bias included).

Speed: the input projection of all time steps is one matmul before the loop;
each step does one fused matmul h @ W_hh^T for all gates; backward runs the
step loop for the gate gradients only and gets the weight gradients from one
matmul over all steps after it. Time-major buffers keep each step's slice
contiguous.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from .. import backend as B
from . import init as I
from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer

INITS = ("torch", *(i for i in I.INITS if i != "auto"))


def _project(x, W_ih, b):
    """Input projection of every step at once: x (N, T, F) -> (T, N, G*H) time-major, and x as (T*N, F)."""
    N, T, F = x.shape
    xt = x.transpose(1, 0, 2).reshape(T * N, F)  # (T*N, F), a time-major copy
    A = xt @ W_ih.T  # (T*N, G*H)
    A += b
    return A.reshape(T, N, -1), xt


def _weight_grads(dA, xt, hs, W_ih):
    """Weight gradients from all steps' pre-activation gradients at once.

    dA (T, N, G*H), xt (T*N, F) the inputs, hs (T+1, N, H) the states (hs[0] = h0).
    Returns dx (N, T, F), dW_ih (G*H, F), dW_hh (G*H, H), db (G*H,).
    """
    T, N, GH = dA.shape
    dA2 = dA.reshape(T * N, GH)  # (T*N, G*H)
    dW_ih = dA2.T @ xt
    dW_hh = dA2.T @ hs[:-1].reshape(T * N, -1)
    dx = (dA2 @ W_ih).reshape(T, N, -1).transpose(1, 0, 2)
    return dx, dW_ih, dW_hh, dA2.sum(axis=0)


def _time_major(dys):
    return None if dys is None else dys.transpose(1, 0, 2)  # (T, N, H) view


def _carry(dhT, h0):
    return np.zeros_like(h0) if dhT is None else np.array(dhT, dtype=h0.dtype)


# -- Elman RNN -----------------------------------------------------------------
def rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, nonlinearity="tanh"):
    """h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

    x (N, T, F), h0 (N, H) -> ys (N, T, H) (a view; ys[:, -1] is h_T), cache.
    """
    A, xt = _project(x, W_ih, b_ih + b_hh)  # (T, N, H)
    T = A.shape[0]
    hs = B.empty((T + 1, *h0.shape), dtype=h0.dtype)  # (T+1, N, H), hs[t+1] = h_t
    hs[0] = h0
    for t in range(T):
        h = hs[t + 1]
        np.matmul(hs[t], W_hh.T, out=h)
        h += A[t]
        if nonlinearity == "tanh":
            np.tanh(h, out=h)
        else:
            np.maximum(h, 0, out=h)
    return hs[1:].transpose(1, 0, 2), (xt, hs, W_ih, W_hh, nonlinearity)


def rnn_backward(dys, dhT, cache):
    """dys (N, T, H) or None, dhT (N, H) or None -> dx, dh0, dW_ih, dW_hh, db_ih, db_hh."""
    xt, hs, W_ih, W_hh, nonlinearity = cache
    out = hs[1:]  # (T, N, H)
    dA = 1 - out * out if nonlinearity == "tanh" else (out > 0).astype(out.dtype)  # act' from outputs
    dyt = _time_major(dys)
    dh = _carry(dhT, hs[0])  # (N, H) dL/dh_t
    for t in reversed(range(len(out))):
        if dyt is not None:
            dh += dyt[t]
        dA[t] *= dh  # dL/d pre-activation
        np.matmul(dA[t], W_hh, out=dh)
    dx, dW_ih, dW_hh, db = _weight_grads(dA, xt, hs, W_ih)
    return dx, dh, dW_ih, dW_hh, db, db.copy()


# -- LSTM ----------------------------------------------------------------------
def _lstm_scale(H, dtype):
    """Per-column factors (-1, -1, -2, -1) for gates (i, f, g, o); see lstm_forward."""
    s = np.full((4, H), -1, dtype=dtype)
    s[2] = -2
    return s.reshape(-1)


def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh):
    """i, f, o = sigmoid(.), g = tanh(.) of W_ih x_t + b_ih + W_hh h_{t-1} + b_hh;
    c_t = f c_{t-1} + i g; h_t = o tanh(c_t).

    x (N, T, F), h0, c0 (N, H) -> ys (N, T, H) (a view; ys[:, -1] is h_T), c_T (N, H), cache.
    """
    H = h0.shape[1]
    # Fast gate activations: the pre-activations are kept negated, and doubled for g, so
    # ONE exp over all four gates gives every gate through sigmoid(x) = 1 / (1 + exp(-x))
    # and tanh(x) = 2 sigmoid(2x) - 1 (np.exp is about twice as fast as np.tanh).
    s = _lstm_scale(H, h0.dtype)  # (4H,)
    A, xt = _project(x, W_ih, b_ih + b_hh)  # (T, N, 4H)
    A *= s
    W_hh_s = W_hh * s[:, None]  # (4H, H)
    T, N = A.shape[:2]
    hs = B.empty((T + 1, N, H), dtype=h0.dtype)  # hs[t+1] = h_t
    cs = B.empty((T + 1, N, H), dtype=h0.dtype)  # cs[t+1] = c_t
    tcs = B.empty((T, N, H), dtype=h0.dtype)  # tanh(c_t)
    hs[0], cs[0] = h0, c0
    rec = B.empty((N, 4 * H), dtype=h0.dtype)
    ig = B.empty((N, H), dtype=h0.dtype)
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x gives sigmoid 0, as it should
        for t in range(T):
            a = A[t]  # (N, 4H)
            np.matmul(hs[t], W_hh_s.T, out=rec)
            a += rec
            np.exp(a, out=a)
            a += 1
            np.reciprocal(a, out=a)  # sigmoid of (i, f, 2g, o)
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            g *= 2
            g -= 1
            c = cs[t + 1]
            np.multiply(f, cs[t], out=c)
            np.multiply(i, g, out=ig)
            c += ig
            np.tanh(c, out=tcs[t])
            np.multiply(o, tcs[t], out=hs[t + 1])
    return hs[1:].transpose(1, 0, 2), cs[T], (xt, hs, cs, tcs, A, W_ih, W_hh)


def lstm_backward(dys, dhT, dcT, cache):
    """dys (N, T, H) or None, dhT, dcT (N, H) or None -> dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh."""
    xt, hs, cs, tcs, A, W_ih, W_hh = cache
    T, N, H4 = A.shape
    H = H4 // 4
    i, f, g, o = (A[..., k * H:(k + 1) * H] for k in range(4))  # gate activations (T, N, H)
    # Per-step factors, for all steps at once:
    #   dL/d(i, f, g pre-activations) = dc_t * m[t]     dL/d(o pre-activation) = dh_t * mo[t]
    #   dc_t = dc_{t+1} f_{t+1} + dh_t * k[t]
    m = B.empty((T, N, 3, H), dtype=A.dtype)
    np.multiply(g, i * (1 - i), out=m[:, :, 0])
    np.multiply(cs[:-1], f * (1 - f), out=m[:, :, 1])
    np.multiply(i, 1 - g * g, out=m[:, :, 2])
    mo = tcs * o * (1 - o)
    k = o * (1 - tcs * tcs)
    dA = B.empty((T, N, 4, H), dtype=A.dtype)  # gate pre-activation gradients (i, f, g, o)
    dyt = _time_major(dys)
    dh = _carry(dhT, hs[0])  # dL/dh_t
    dc = _carry(dcT, hs[0])  # dL/dc_t, through c only so far
    tmp = np.empty_like(dh)
    for t in reversed(range(T)):
        if dyt is not None:
            dh += dyt[t]
        np.multiply(dh, k[t], out=tmp)
        dc += tmp
        np.multiply(dc[:, None, :], m[t], out=dA[t, :, :3])
        np.multiply(dh, mo[t], out=dA[t, :, 3])
        np.matmul(dA[t].reshape(N, H4), W_hh, out=dh)
        dc *= f[t]
    dA = dA.reshape(T, N, H4)
    dx, dW_ih, dW_hh, db = _weight_grads(dA, xt, hs, W_ih)
    return dx, dh, dc, dW_ih, dW_hh, db, db.copy()


# -- GRU -----------------------------------------------------------------------
def gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh):
    """r, z = sigmoid(W_i. x_t + b_i. + W_h. h + b_h.); n = tanh(W_in x_t + b_in + r (W_hn h + b_hn));
    h_t = (1 - z) n + z h_{t-1}   (PyTorch's GRU).

    x (N, T, F), h0 (N, H) -> ys (N, T, H) (a view; ys[:, -1] is h_T), cache.
    """
    H = h0.shape[1]
    A, xt = _project(x, W_ih, b_ih)  # (T, N, 3H): input parts of r, z, n
    T, N = A.shape[:2]
    # r and z use the same negated-pre-activation trick as the LSTM (one exp, then 1 / (1 + e)).
    A[..., :2 * H] *= -1
    W_hh_s, b_hh_s = W_hh.copy(), b_hh.copy()
    W_hh_s[:2 * H] *= -1
    b_hh_s[:2 * H] *= -1
    hs = B.empty((T + 1, N, H), dtype=h0.dtype)  # hs[t+1] = h_t
    hn = B.empty((T, N, H), dtype=h0.dtype)  # W_hn h_{t-1} + b_hn
    hs[0] = h0
    rec = B.empty((N, 3 * H), dtype=h0.dtype)
    with np.errstate(over="ignore"):
        for t in range(T):
            a = A[t]  # (N, 3H)
            np.matmul(hs[t], W_hh_s.T, out=rec)
            rec += b_hh_s
            rz = a[:, :2 * H]
            rz += rec[:, :2 * H]
            np.exp(rz, out=rz)
            rz += 1
            np.reciprocal(rz, out=rz)
            r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
            np.copyto(hn[t], rec[:, 2 * H:])
            np.multiply(r, hn[t], out=rec[:, 2 * H:])
            n += rec[:, 2 * H:]
            np.tanh(n, out=n)
            h = hs[t + 1]
            np.subtract(hs[t], n, out=h)
            h *= z
            h += n
    return hs[1:].transpose(1, 0, 2), (xt, hs, hn, A, W_ih, W_hh)


def gru_backward(dys, dhT, cache):
    """dys (N, T, H) or None, dhT (N, H) or None -> dx, dh0, dW_ih, dW_hh, db_ih, db_hh."""
    xt, hs, hn, A, W_ih, W_hh = cache
    T, N, H3 = A.shape
    H = H3 // 3
    r, z, n = A[..., :H], A[..., H:2 * H], A[..., 2 * H:]  # (T, N, H)
    # Per-step factors for all steps: with dh_t the gradient at h_t,
    #   da_n = dh pn,   da_r = da_n pr,   da_z = dh pz   (pre-activation gradients)
    pn = (1 - z) * (1 - n * n)
    pr = hn * r * (1 - r)
    pz = (hs[:-1] - n) * z * (1 - z)
    # One buffer holds (da_n, da_r, da_z, r da_n) per step: columns [H:4H] are the gradient of
    # the hidden projection (r, z, n order) and [0:3H] that of the input projection in (n, r, z)
    # order, so both are plain slices (rolled back to r, z, n after the loop).
    D = B.empty((T, N, 4 * H), dtype=A.dtype)
    dyt = _time_major(dys)
    dh = _carry(dhT, hs[0])  # dL/dh_t
    tmp = np.empty_like(dh)
    for t in reversed(range(T)):
        if dyt is not None:
            dh += dyt[t]
        d = D[t]
        da_n = d[:, :H]
        np.multiply(dh, pn[t], out=da_n)
        np.multiply(da_n, pr[t], out=d[:, H:2 * H])
        np.multiply(dh, pz[t], out=d[:, 2 * H:3 * H])
        np.multiply(da_n, r[t], out=d[:, 3 * H:])
        np.multiply(dh, z[t], out=tmp)
        np.matmul(d[:, H:], W_hh, out=dh)
        dh += tmp
    D2 = D.reshape(T * N, 4 * H)
    dGh, dGi = D2[:, H:], D2[:, :3 * H]  # (T*N, 3H) in (r, z, n) and (n, r, z) order
    dW_hh = dGh.T @ hs[:-1].reshape(T * N, H)
    dW_ih = np.roll(dGi.T @ xt, -H, axis=0)  # (n, r, z) rows -> (r, z, n)
    dx = (dGi @ np.roll(W_ih, H, axis=0)).reshape(T, N, -1).transpose(1, 0, 2)
    return dx, dh, dW_ih, dW_hh, np.roll(dGi.sum(axis=0), -H), dGh.sum(axis=0)


# -- layers --------------------------------------------------------------------
PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class RecurrentConfig(LayerConfig):
    units: int = Field(gt=0, description="hidden size H")
    return_sequences: bool = Field(
        False, description="output every step's hidden state (N, T, H); else the final one (N, H)")
    bidirectional: bool = Field(
        False, description="also run over the reversed sequence and concatenate its features (2H), "
                           "like torch's bidirectional; the final state is then [forward h_T, backward h_1]")
    init: Literal[INITS] = Field(  # type: ignore[valid-type]
        "torch", description="weight init: torch = uniform(-1/sqrt(units), 1/sqrt(units)) for weights and "
                             "biases (PyTorch's default); any other = that init for the weights, zero biases")


class _Recurrent(Layer):
    """Shared parts of RNN, LSTM and GRU: params per direction, directions, output assembly."""

    gates: ClassVar[int]  # G: blocks of H rows stacked in weight_ih / weight_hh

    def _directions(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.config.bidirectional else ("",)

    def build(self, in_shape):
        if len(in_shape) != 2:
            raise ShapeError(f"{self.type_name} needs sequences of shape (T, F), got {in_shape}")
        T, F = in_shape
        H, GH = self.config.units, self.gates * self.config.units
        for suffix in self._directions():
            self.add_param(f"weight_ih{suffix}", self._init((GH, F), F))  # (G*H, F)
            self.add_param(f"weight_hh{suffix}", self._init((GH, H), H))  # (G*H, H)
            self.add_param(f"bias_ih{suffix}", self._init((GH,), None))  # (G*H,)
            self.add_param(f"bias_hh{suffix}", self._init((GH,), None))  # (G*H,)
        H_out = H * len(self._directions())
        return (T, H_out) if self.config.return_sequences else (H_out,)

    def _init(self, shape, fan_in):
        H = self.config.units
        if self.config.init == "torch":
            k = 1 / np.sqrt(H)
            return B.asarray(self.rng.uniform(-k, k, shape))
        if fan_in is None:
            return B.zeros(shape)
        return I.initialise(self.config.init, shape, fan_in, H, self.rng)

    def forward(self, x, training):
        H = self.config.units
        x = x.astype(self.params["weight_ih"].dtype, copy=False)  # (N, T, F) in the params' dtype
        y = B.empty((x.shape[0], *self.out_shape), dtype=x.dtype)  # (N, T, dirs*H) or (N, dirs*H)
        self.caches = []
        for d, suffix in enumerate(self._directions()):
            ys, cache = self._run(x[:, ::-1] if d else x, [self.params[n + suffix] for n in PARAM_NAMES])
            self.caches.append(cache)
            if self.config.return_sequences:
                y[..., d * H:(d + 1) * H] = ys[:, ::-1] if d else ys  # back in input order
            else:
                y[:, d * H:(d + 1) * H] = ys[:, -1]
        return y

    def backward(self, dy):
        H = self.config.units
        dx = 0
        for d, suffix in enumerate(self._directions()):
            part = dy[..., d * H:(d + 1) * H]  # (N, T, H) or (N, H)
            if self.config.return_sequences:
                dxd, grads = self._grad(part[:, ::-1] if d else part, None, self.caches[d])
            else:
                dxd, grads = self._grad(None, part, self.caches[d])
            for n, g in zip(PARAM_NAMES, grads):
                self.grads[n + suffix] += g
            dx = dx + (dxd[:, ::-1] if d else dxd)
        return np.ascontiguousarray(dx)  # (N, T, F)

    def _run(self, x, weights):
        """One direction: (ys (N, T, H), cache) from zero initial state."""
        raise NotImplementedError

    def _grad(self, dys, dhT, cache):
        """One direction: (dx (N, T, F), (dW_ih, dW_hh, db_ih, db_hh))."""
        raise NotImplementedError

    def _zeros_state(self, x):
        return B.zeros((x.shape[0], self.config.units), dtype=x.dtype)

    def flops(self):
        T, F = self.in_shape
        H = self.config.units
        return len(self._directions()) * T * 2 * self.gates * H * (F + H)

    @classmethod
    def grad_cases(cls, **extra):
        cases = [(1, True, False), (1, False, True), (3, False, False),
                 (3, True, True), (5, True, False), (5, False, True)]
        return [GradCase({"units": 4, "return_sequences": rs, "bidirectional": bi, **extra}, (T, 3), batch=2)
                for T, rs, bi in cases]


@register_layer("rnn")
class RNN(_Recurrent):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act = tanh or relu."""

    gates = 1

    class Config(RecurrentConfig):
        type: Literal["rnn"] = "rnn"
        nonlinearity: Literal["tanh", "relu"] = Field("tanh", description="activation of the hidden state")

    def _run(self, x, weights):
        return rnn_forward(x, self._zeros_state(x), *weights, nonlinearity=self.config.nonlinearity)

    def _grad(self, dys, dhT, cache):
        dx, _, *grads = rnn_backward(dys, dhT, cache)
        return dx, grads

    @classmethod
    def grad_cases(cls):
        return super().grad_cases() + super().grad_cases(nonlinearity="relu")[2:4]


@register_layer("lstm")
class LSTM(_Recurrent):
    """Long short-term memory (gates i, f, g, o, PyTorch's order and layout)."""

    gates = 4

    class Config(RecurrentConfig):
        type: Literal["lstm"] = "lstm"
        forget_bias: float = Field(
            1.0, description="initial forget-gate bias (set in bias_ih; bias_hh's forget part starts at 0)")

    def build(self, in_shape):
        out_shape = super().build(in_shape)
        H = self.config.units
        for suffix in self._directions():
            self.params[f"bias_ih{suffix}"][H:2 * H] = self.config.forget_bias
            self.params[f"bias_hh{suffix}"][H:2 * H] = 0
        return out_shape

    def _run(self, x, weights):
        h0 = self._zeros_state(x)
        ys, _, cache = lstm_forward(x, h0, h0, *weights)
        return ys, cache

    def _grad(self, dys, dhT, cache):
        dx, _, _, *grads = lstm_backward(dys, dhT, None, cache)
        return dx, grads


@register_layer("gru")
class GRU(_Recurrent):
    """Gated recurrent unit in PyTorch's convention (gates r, z, n)."""

    gates = 3

    class Config(RecurrentConfig):
        type: Literal["gru"] = "gru"

    def _run(self, x, weights):
        return gru_forward(x, self._zeros_state(x), *weights)

    def _grad(self, dys, dhT, cache):
        dx, _, *grads = gru_backward(dys, dhT, cache)
        return dx, grads
