"""The checker itself: it must catch a wrong backward pass."""
from typing import Literal

import numpy as np

from netcli.gradcheck import check_layer
from netcli.layers.base import GradCase, Layer, LayerConfig
from netcli.registry import LAYERS


class _Scale(Layer):
    """y = x * w, with a backward that forgets the factor 2 in dw on purpose."""

    class Config(LayerConfig):
        type: Literal["_scale"] = "_scale"
        wrong: bool = False

    def build(self, in_shape):
        self.add_param("w", np.ones(in_shape))
        return in_shape

    def forward(self, x, training):
        self.x = x
        return x * self.params["w"] * 2

    def backward(self, dy):
        self.grads["w"] += (dy * self.x).sum(0) * (1 if self.config.wrong else 2)
        return dy * self.params["w"] * 2


def test_checker_catches_a_wrong_gradient(monkeypatch):
    monkeypatch.setitem(LAYERS._items, "_scale", _Scale)
    _Scale.type_name = "_scale"
    good = check_layer("_scale", GradCase({}, (4,)))
    bad = check_layer("_scale", GradCase({"wrong": True}, (4,)))
    assert good.ok(1e-6)
    assert not bad.ok(1e-6)
    assert bad.worst[0] == "param w" and bad.errors["input"] < 1e-6


def test_contract_check_catches_overwriting_gradients_and_changing_the_input(monkeypatch):
    from netcli.gradcheck import layer_contract

    class _Careless(_Scale):
        def forward(self, x, training):
            x *= 1.0  # in place: harmless here, but the check must see that x was written ...
            x[...] = x + 1e-3 if self.config.wrong else x
            return super().forward(x, training)

        def backward(self, dy):
            self.grads["w"][...] = 0  # ... and that gradients are overwritten, not added
            return super().backward(dy)

    monkeypatch.setitem(LAYERS._items, "_scale", _Careless)
    _Careless.type_name = "_scale"
    careless = layer_contract("_scale", GradCase({"wrong": True}, (4,)))
    assert careless == {"input untouched": False, "gradients accumulate": False}
    monkeypatch.setitem(LAYERS._items, "_scale", _Scale)
    assert layer_contract("_scale", GradCase({}, (4,))) == {"input untouched": True, "gradients accumulate": True}
