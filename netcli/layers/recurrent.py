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
contiguous; sigmoid gates come from one exp over the row of pre-activations
(see lstm_forward); the backward factors of every step are computed at once
before the loop; buffers live in a per-direction Workspace, reused across
steps. The float64 gradient checks and the torch parity tests
(tests/test_recurrent*.py) cover these fast paths, the float32 one included.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from .. import backend as B
from . import init as I
from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer

INITS = ("torch", *(i for i in I.INITS if i != "auto"))


class Workspace:
    """Named scratch arrays, reused from call to call while shape and dtype stay the same.

    Fresh multi-megabyte arrays are page-faulted in on first touch, which costs as much as a
    good part of the math here; the layers keep one workspace per direction. Arrays handed out
    are overwritten by the next call that uses the same workspace.
    """

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def __call__(self, name, shape, dtype):
        a = self.arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self.arrays[name] = B.empty(shape, dtype=dtype)
        return a


def _project(ws, x, W_ih, b):
    """Input projection of every step at once: x (N, T, F) -> A (T, N, G*H) time-major, and x as (T*N, F)."""
    N, T, F = x.shape
    xt = ws("xt", (T, N, F), x.dtype)
    np.copyto(xt, x.transpose(1, 0, 2))
    xt = xt.reshape(T * N, F)  # (T*N, F)
    A = ws("A", (T * N, len(b)), x.dtype)
    np.matmul(xt, W_ih.T, out=A)  # (T*N, G*H)
    A += b
    return A.reshape(T, N, -1), xt


def _weight_grads(ws, dA, xt, hs, W_ih):
    """Weight gradients from all steps' pre-activation gradients at once.

    dA (T*N, G*H), xt (T*N, F) the inputs, hs (T+1, N, H) the states (hs[0] = h0).
    Returns dx (N, T, F), dW_ih (G*H, F), dW_hh (G*H, H), db (G*H,).
    """
    T, N, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    GH, F = W_ih.shape
    dW_ih = np.matmul(dA.T, xt, out=ws("dW_ih", (GH, F), dA.dtype))
    dW_hh = np.matmul(dA.T, hs[:-1].reshape(T * N, H), out=ws("dW_hh", (GH, H), dA.dtype))
    dx = np.matmul(dA, W_ih, out=ws("dx", (T * N, F), dA.dtype))
    return dx.reshape(T, N, F).transpose(1, 0, 2), dW_ih, dW_hh, dA.sum(axis=0)


def _time_major(dys):
    return None if dys is None else dys.transpose(1, 0, 2)  # (T, N, H) view


def _carry(dhT, h0):
    return np.zeros_like(h0) if dhT is None else np.array(dhT, dtype=h0.dtype)


# The sequence functions below take x (N, T, F) batch first and keep their buffers time-major
# (T, N, .), so each step's slice is contiguous. ``ws`` (a Workspace) holds the buffers; without
# one they are fresh. The backward functions return arrays from the forward's workspace.

# -- Elman RNN -----------------------------------------------------------------
def rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, nonlinearity="tanh", ws=None):
    """h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

    x (N, T, F), h0 (N, H) -> ys (N, T, H) (a view; ys[:, -1] is h_T), cache.
    """
    ws = ws or Workspace()
    A, xt = _project(ws, x, W_ih, b_ih + b_hh)  # (T, N, H)
    T = A.shape[0]
    hs = ws("hs", (T + 1, *h0.shape), h0.dtype)  # hs[t+1] = h_t
    hs[0] = h0
    for t in range(T):
        h = hs[t + 1]
        np.matmul(hs[t], W_hh.T, out=h)
        h += A[t]
        if nonlinearity == "tanh":
            np.tanh(h, out=h)
        else:
            np.maximum(h, 0, out=h)
    return hs[1:].transpose(1, 0, 2), (ws, xt, hs, W_ih, W_hh, nonlinearity)


def rnn_backward(dys, dhT, cache):
    """dys (N, T, H) or None, dhT (N, H) or None -> dx, dh0, dW_ih, dW_hh, db_ih, db_hh."""
    ws, xt, hs, W_ih, W_hh, nonlinearity = cache
    out = hs[1:]  # (T, N, H)
    dA = ws("dA", out.shape, out.dtype)  # act' from the outputs, then dL/d pre-activation
    if nonlinearity == "tanh":
        np.multiply(out, out, out=dA)
        np.subtract(1, dA, out=dA)
    else:
        np.greater(out, 0, out=dA)
    dyt = _time_major(dys)
    dh = _carry(dhT, hs[0])  # (N, H) dL/dh_t
    for t in reversed(range(len(out))):
        if dyt is not None:
            dh += dyt[t]
        dA[t] *= dh
        np.matmul(dA[t], W_hh, out=dh)
    dx, dW_ih, dW_hh, db = _weight_grads(ws, dA.reshape(-1, dA.shape[2]), xt, hs, W_ih)
    return dx, dh, dW_ih, dW_hh, db, db.copy()


# -- LSTM ----------------------------------------------------------------------
def _lstm_scale(H, dtype):
    """Per-column factors (-1, -1, -2, -1) for gates (i, f, g, o); see lstm_forward."""
    s = np.full((4, H), -1, dtype=dtype)
    s[2] = -2
    return s.reshape(-1)


def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, ws=None):
    """i, f, o = sigmoid(.), g = tanh(.) of W_ih x_t + b_ih + W_hh h_{t-1} + b_hh;
    c_t = f c_{t-1} + i g; h_t = o tanh(c_t).

    x (N, T, F), h0, c0 (N, H) -> ys (N, T, H) (a view; ys[:, -1] is h_T), c_T (N, H), cache.
    """
    ws = ws or Workspace()
    N, H, dt = h0.shape[0], h0.shape[1], h0.dtype
    # Fast gate activations: the pre-activations are computed negated, and doubled for g (the
    # weights are scaled by s), so ONE exp over all four gates gives every gate through
    # sigmoid(x) = 1 / (1 + exp(-x)) and tanh(x) = 2 sigmoid(2x) - 1 (np.exp is about twice as
    # fast as np.tanh).
    s = _lstm_scale(H, dt)  # (4H,)
    A, xt = _project(ws, x, W_ih * s[:, None], (b_ih + b_hh) * s)  # (T, N, 4H)
    W_hh_s = W_hh * s[:, None]  # (4H, H)
    T = A.shape[0]
    hs, cs = ws("hs", (T + 1, N, H), dt), ws("cs", (T + 1, N, H), dt)  # hs[t+1] = h_t, cs[t+1] = c_t
    tcs, fc, ig = (ws(name, (T, N, H), dt) for name in ("tcs", "fc", "ig"))  # tanh(c_t), f c_{t-1}, i g
    hs[0], cs[0] = h0, c0
    rec = ws("rec", (N, 4 * H), dt)
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
            np.multiply(f, cs[t], out=fc[t])
            np.multiply(i, g, out=ig[t])
            np.add(fc[t], ig[t], out=cs[t + 1])
            np.tanh(cs[t + 1], out=tcs[t])
            np.multiply(o, tcs[t], out=hs[t + 1])
    return hs[1:].transpose(1, 0, 2), cs[T], (ws, xt, hs, tcs, fc, ig, A, W_ih, W_hh)


def lstm_backward(dys, dhT, dcT, cache):
    """dys (N, T, H) or None, dhT, dcT (N, H) or None -> dx, dh0, dc0, dW_ih, dW_hh, db_ih, db_hh."""
    ws, xt, hs, tcs, fc, ig, A, W_ih, W_hh = cache
    T, N, H4 = A.shape
    H, dt = H4 // 4, A.dtype
    i, f, g, o = (A[..., k * H:(k + 1) * H] for k in range(4))  # gate activations (T, N, H)
    # Per-step factors, for all steps at once (written with the products kept by forward):
    #   dL/d(i, f, g pre-activations) = dc_t * m[t],  m = (g i(1-i), c_{t-1} f(1-f), i (1-g^2))
    #   dL/d(o pre-activation) = dh_t * mo[t],        mo = tanh(c_t) o(1-o) = h_t (1-o)
    #   dc_t = dc_{t+1} f_{t+1} + dh_t * k[t],        k = o (1 - tanh(c_t)^2) = o - h_t tanh(c_t)
    m = ws("m", (T, N, 3, H), dt)
    mi, mf, mg = m[:, :, 0], m[:, :, 1], m[:, :, 2]
    np.subtract(1, i, out=mi)
    mi *= ig
    np.subtract(1, f, out=mf)
    mf *= fc
    np.multiply(ig, g, out=mg)
    np.subtract(i, mg, out=mg)
    mo, k = ws("mo", (T, N, H), dt), ws("k", (T, N, H), dt)
    np.subtract(1, o, out=mo)
    mo *= hs[1:]
    np.multiply(hs[1:], tcs, out=k)
    np.subtract(o, k, out=k)
    dA = ws("dA", (T, N, 4, H), dt)  # gate pre-activation gradients (i, f, g, o)
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
    dx, dW_ih, dW_hh, db = _weight_grads(ws, dA.reshape(T * N, H4), xt, hs, W_ih)
    return dx, dh, dc, dW_ih, dW_hh, db, db.copy()


# -- GRU -----------------------------------------------------------------------
def gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh, ws=None):
    """r, z = sigmoid(W_i. x_t + b_i. + W_h. h + b_h.); n = tanh(W_in x_t + b_in + r (W_hn h + b_hn));
    h_t = (1 - z) n + z h_{t-1}   (PyTorch's GRU).

    x (N, T, F), h0 (N, H) -> ys (N, T, H) (a view; ys[:, -1] is h_T), cache.
    """
    ws = ws or Workspace()
    N, H, dt = h0.shape[0], h0.shape[1], h0.dtype
    # r and z use the LSTM's trick: their pre-activations come out negated (one exp, then
    # 1 / (1 + e)); their hidden biases join the input projection, b_hn stays inside r (...).
    s = np.ones(3 * H, dtype=dt)
    s[:2 * H] = -1
    b = b_ih.copy()
    b[:2 * H] += b_hh[:2 * H]
    A, xt = _project(ws, x, W_ih * s[:, None], b * s)  # (T, N, 3H): input parts of r, z, n
    W_hh_s = W_hh * s[:, None]  # (3H, H)
    b_hn = b_hh[2 * H:]
    T = A.shape[0]
    hs = ws("hs", (T + 1, N, H), dt)  # hs[t+1] = h_t
    hn, rhn, zd = (ws(name, (T, N, H), dt) for name in ("hn", "rhn", "zd"))  # W_hn h + b_hn, r hn, z (h - n)
    hs[0] = h0
    rec = ws("rec", (N, 3 * H), dt)
    with np.errstate(over="ignore"):
        for t in range(T):
            a = A[t]  # (N, 3H)
            np.matmul(hs[t], W_hh_s.T, out=rec)
            rz = a[:, :2 * H]
            rz += rec[:, :2 * H]
            np.exp(rz, out=rz)
            rz += 1
            np.reciprocal(rz, out=rz)
            r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
            np.add(rec[:, 2 * H:], b_hn, out=hn[t])
            np.multiply(r, hn[t], out=rhn[t])
            n += rhn[t]
            np.tanh(n, out=n)
            np.subtract(hs[t], n, out=zd[t])
            zd[t] *= z
            np.add(zd[t], n, out=hs[t + 1])
    return hs[1:].transpose(1, 0, 2), (ws, xt, hs, rhn, zd, A, W_ih, W_hh)


def gru_backward(dys, dhT, cache):
    """dys (N, T, H) or None, dhT (N, H) or None -> dx, dh0, dW_ih, dW_hh, db_ih, db_hh."""
    ws, xt, hs, rhn, zd, A, W_ih, W_hh = cache
    T, N, H3 = A.shape
    H, dt = H3 // 3, A.dtype
    r, z, n = A[..., :H], A[..., H:2 * H], A[..., 2 * H:]  # (T, N, H)
    # Per-step factors for all steps: with dh_t the gradient at h_t, the pre-activation gradients are
    #   da_n = dh pn, pn = (1-z)(1-n^2);  da_r = da_n pr, pr = hn r(1-r);  da_z = dh pz, pz = (h-n) z(1-z)
    omz, pz, pn, pr = (ws(name, (T, N, H), dt) for name in ("omz", "pz", "pn", "pr"))
    np.subtract(1, z, out=omz)
    np.multiply(zd, omz, out=pz)
    np.multiply(n, n, out=pn)
    np.subtract(1, pn, out=pn)
    pn *= omz
    np.subtract(1, r, out=pr)
    pr *= rhn
    # One buffer holds (da_n, da_r, da_z, r da_n) per step: columns [H:4H] are the gradient of
    # the hidden projection (r, z, n order) and [0:3H] that of the input projection in (n, r, z)
    # order, so both are plain slices (rolled back to r, z, n after the loop).
    D = ws("D", (T, N, 4 * H), dt)
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
    dW_hh = np.matmul(dGh.T, hs[:-1].reshape(T * N, H), out=ws("dW_hh", (H3, H), dt))
    dW_ih = np.roll(dGi.T @ xt, -H, axis=0)  # (n, r, z) rows -> (r, z, n)
    dx = np.matmul(dGi, np.roll(W_ih, H, axis=0), out=ws("dx", (T * N, xt.shape[1]), dt))
    dx = dx.reshape(T, N, -1).transpose(1, 0, 2)
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
        self.workspaces: dict[tuple[int, int], Workspace] = {}  # (batch chunk, direction): buffers reused
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

    # Samples are independent: the batch is split into one chunk per engine thread, and each chunk
    # runs the whole step loop of every direction on its own workspace.
    def forward(self, x, training):
        H = self.config.units
        x = x.astype(self.params["weight_ih"].dtype, copy=False)  # (N, T, F) in the params' dtype
        y = B.empty((x.shape[0], *self.out_shape), dtype=x.dtype)  # (N, T, dirs*H) or (N, dirs*H)
        F = self.in_shape[1]

        def chunk(i_s):
            i, s = i_s
            caches = []
            for d, suffix in enumerate(self._directions()):
                weights = [self.params[n + suffix] for n in PARAM_NAMES]
                ws = self.workspaces.setdefault((i, d), Workspace())
                ys, cache = self._run(x[s, ::-1] if d else x[s], weights, ws)
                caches.append(cache)
                if self.config.return_sequences:
                    y[s, :, d * H:(d + 1) * H] = ys[:, ::-1] if d else ys  # back in input order
                else:
                    y[s, d * H:(d + 1) * H] = ys[:, -1]
            return caches

        macs_per_entry = self.gates * H * (F + H) / F  # per entry of x, each step's two matmuls
        self.chunks = B.batch_chunks(x, macs_per_entry / 32)
        self.caches = B.parallel(chunk, list(enumerate(self.chunks)))
        return y

    def backward(self, dy):
        H = self.config.units
        dx = B.empty((dy.shape[0], *self.in_shape), dtype=dy.dtype)  # (N, T, F)

        def chunk(s_caches):
            s, caches = s_caches
            grads = []
            for d, suffix in enumerate(self._directions()):
                part = dy[s, ..., d * H:(d + 1) * H]  # (M, T, H) or (M, H)
                if self.config.return_sequences:
                    dxd, g = self._grad(part[:, ::-1] if d else part, None, caches[d])
                else:
                    dxd, g = self._grad(None, part, caches[d])
                grads += [(n + suffix, gn) for n, gn in zip(PARAM_NAMES, g)]
                if d:
                    dx[s] += dxd[:, ::-1]
                else:
                    dx[s] = dxd
            return grads

        for grads in B.parallel(chunk, list(zip(self.chunks, self.caches))):
            for name, g in grads:
                self.grads[name] += g
        return dx

    def _run(self, x, weights, ws):
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

    def _run(self, x, weights, ws):
        return rnn_forward(x, self._zeros_state(x), *weights, nonlinearity=self.config.nonlinearity, ws=ws)

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

    def _run(self, x, weights, ws):
        h0 = self._zeros_state(x)
        ys, _, cache = lstm_forward(x, h0, h0, *weights, ws=ws)
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

    def _run(self, x, weights, ws):
        return gru_forward(x, self._zeros_state(x), *weights, ws=ws)

    def _grad(self, dys, dhT, cache):
        dx, _, *grads = gru_backward(dys, dhT, cache)
        return dx, grads
