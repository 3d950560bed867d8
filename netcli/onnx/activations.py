"""Every activation: relu, leaky_relu, sigmoid, tanh, gelu (exact erf and tanh forms), softmax, identity.

ONNX has Gelu only from opset 20, so both GELU forms are written out:
exact x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); tanh 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
"""
import math

import numpy as np

from .convert import converter


@converter("relu")
def relu(g, layer, x, prefix):
    return g.op("Relu", x)


@converter("leaky_relu")
def leaky_relu(g, layer, x, prefix):
    return g.op("LeakyRelu", x, alpha=float(layer.config.negative_slope))


@converter("sigmoid")
def sigmoid(g, layer, x, prefix):
    return g.op("Sigmoid", x)


@converter("tanh")
def tanh(g, layer, x, prefix):
    return g.op("Tanh", x)


@converter("softmax")
def softmax(g, layer, x, prefix):
    return g.op("Softmax", x, axis=-1)


@converter("identity")
@converter("dropout")  # eval mode: the identity
def identity(g, layer, x, prefix):
    return x


def _c(g, value):
    return g.const(np.float32(value))


@converter("gelu")
def gelu(g, layer, x, prefix):
    if layer.config.approximate == "tanh":
        cube = g.op("Mul", g.op("Mul", x, x), x)
        inner = g.op("Mul", g.op("Add", x, g.op("Mul", cube, _c(g, 0.044715))), _c(g, math.sqrt(2 / math.pi)))
        phi = g.op("Add", g.op("Tanh", inner), _c(g, 1.0))  # 2 * the tanh form of Phi(x)
    else:
        phi = g.op("Add", g.op("Erf", g.op("Div", x, _c(g, math.sqrt(2)))), _c(g, 1.0))  # 2 Phi(x)
    return g.op("Mul", g.op("Mul", x, phi), _c(g, 0.5))
