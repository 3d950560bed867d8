"""rnn, lstm and gru as ONNX's RNN, LSTM and GRU ops (one op per layer, both directions in it).

netcli keeps PyTorch's layout: gate blocks of H rows stacked in weight_ih (G*H, F)
and weight_hh (G*H, H), in the order i, f, g, o (LSTM) and r, z, n (GRU). ONNX
stacks them as i, o, f, c and z, r, h, per direction in a leading axis, with
both biases in one (dirs, 2*G*H) array. netcli's GRU applies the reset gate to
the hidden projection with its bias, n = tanh(W_in x + b_in + r (W_hn h + b_hn)),
which is ONNX's ``linear_before_reset=1``. The ops run time-major (T, N, F),
so the sequence is transposed in and the outputs back.

    return_sequences: Y (T, dirs, N, H) -> (N, T, dirs*H)   [forward | backward] features of each step
    final state:      Y_h (dirs, N, H)  -> (N, dirs*H)      [forward h_T | backward h_1]
"""
import numpy as np

from .convert import converter

# netcli's gate blocks in ONNX's order: LSTM (i, f, g, o) -> (i, o, f, c); GRU (r, z, n) -> (z, r, h)
GATE_ORDER = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}


def _onnx_weights(g, layer, prefix):
    """W (dirs, G*H, F), R (dirs, G*H, H), B (dirs, 2*G*H) in ONNX's gate order, as initializers."""
    H, order = layer.config.units, GATE_ORDER[layer.type_name]

    def gates(a):  # (G*H, ...) rows regrouped by gate
        return a.reshape(len(order), H, *a.shape[1:])[order].reshape(a.shape)

    W, R, B = [], [], []
    for suffix in layer._directions():
        p = {name: layer.params[name + suffix] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        W.append(gates(p["weight_ih"]))
        R.append(gates(p["weight_hh"]))
        B.append(np.concatenate([gates(p["bias_ih"]), gates(p["bias_hh"])]))
    return (g.const(np.stack(W), prefix + "W"), g.const(np.stack(R), prefix + "R"),
            g.const(np.stack(B), prefix + "B"))


@converter("rnn")
@converter("lstm")
@converter("gru")
def recurrent(g, layer, x, prefix):
    cfg = layer.config
    dirs = len(layer._directions())
    attrs = {"hidden_size": cfg.units, "direction": "bidirectional" if cfg.bidirectional else "forward"}
    if layer.type_name == "rnn":
        attrs["activations"] = [cfg.nonlinearity.capitalize()] * dirs  # Tanh or Relu
    if layer.type_name == "gru":
        attrs["linear_before_reset"] = 1
    n_out = {"rnn": 2, "gru": 2, "lstm": 3}[layer.type_name]  # Y, Y_h (and Y_c)
    xt = g.op("Transpose", x, perm=[1, 0, 2])  # (T, N, F)
    y, y_h = g.op(layer.type_name.upper(), xt, *_onnx_weights(g, layer, prefix), n_out=n_out, **attrs)[:2]
    if cfg.return_sequences:
        steps = g.op("Transpose", y, perm=[2, 0, 1, 3])  # (N, T, dirs, H)
        return g.op("Reshape", steps, g.const(np.array([0, 0, dirs * cfg.units], np.int64)))  # (N, T, dirs*H)
    final = g.op("Transpose", y_h, perm=[1, 0, 2])  # (N, dirs, H)
    return g.op("Reshape", final, g.const(np.array([0, dirs * cfg.units], np.int64)))  # (N, dirs*H)
