"""A netcli plugin: the Swish activation, y = x * sigmoid(beta * x) (Ramachandran et al. 2017).

    plugins: [swish.py]                     # in a config, relative to it; or: netcli --plugin swish.py ...
    netcli gradcheck examples/swish.py      # finite-difference check of forward/backward, float64
    netcli train examples/mnist_swish.yaml
"""
from typing import Literal

import numpy as np
from pydantic import Field

from netcli.layers import GradCase, Layer, LayerConfig, register_layer


@register_layer("swish")
class Swish(Layer):
    """y = x * sigmoid(beta * x), entry by entry (SiLU for beta = 1)."""

    class Config(LayerConfig):
        type: Literal["swish"] = "swish"
        beta: float = Field(1.0, gt=0, description="slope of the gate's sigmoid")

    def forward(self, x, training):
        self.x = x
        self.s = 1.0 / (1.0 + np.exp(-self.config.beta * x))  # sigmoid(beta x), x's shape
        return x * self.s

    def backward(self, dy):
        # d/dx [x s] = s + x * beta * s (1 - s)
        return dy * (self.s + self.x * self.config.beta * self.s * (1.0 - self.s))

    @classmethod
    def grad_cases(cls):
        return [GradCase({}, (7,)), GradCase({"beta": 2.5}, (3, 4), note="a sequence of features")]
