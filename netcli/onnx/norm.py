"""batchnorm (eval mode: running statistics) and layernorm."""
import numpy as np

from .convert import converter


def _affine(g, layer, prefix, shape):
    """gamma and beta: the learned ones, or constants 1 and 0 without ``affine``."""
    if layer.config.affine:
        return g.param(prefix + "gamma", layer.params["gamma"]), g.param(prefix + "beta", layer.params["beta"])
    return g.const(np.ones(shape, np.float32)), g.const(np.zeros(shape, np.float32))


@converter("batchnorm")
def batchnorm(g, layer, x, prefix):
    features = layer.buffers["running_mean"].shape
    gamma, beta = _affine(g, layer, prefix, features)
    stats = g.param(prefix + "running_mean", layer.buffers["running_mean"]), \
        g.param(prefix + "running_var", layer.buffers["running_var"])
    sequence = len(layer.in_shape) == 2  # (N, T, F): features on the last axis; ONNX normalises axis 1
    if sequence:
        x = g.op("Transpose", x, perm=[0, 2, 1])  # (N, F, T)
    y = g.op("BatchNormalization", x, gamma, beta, *stats, epsilon=layer.config.eps)
    return g.op("Transpose", y, perm=[0, 2, 1]) if sequence else y


@converter("layernorm")
def layernorm(g, layer, x, prefix):
    k = layer.config.normalized_dims
    gamma, beta = _affine(g, layer, prefix, layer.in_shape[-k:])
    return g.op("LayerNormalization", x, gamma, beta, axis=-k, epsilon=layer.config.eps)
