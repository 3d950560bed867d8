"""The model contract: a model owns its networks, its loss and its metrics.

    model = MODELS.get(cfg.type)(cfg, loss_spec)
    model.setup(info, rng)          # info: input_shape, task, num_classes (a data Splits)
    metrics = model.train_batch(x, y)   # forward + loss + backward; grads accumulate
    metrics = model.eval_batch(x, y)    # forward in eval mode, no gradients

Metrics are batch means (floats); the trainer weights them by batch size.
``loss`` is always one of them and is what the optimizer minimises.
"""
from __future__ import annotations

from typing import Any, ClassVar, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..layers.base import Layer, ShapeError, named_buffers, named_params
from ..registry import MODELS


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str


class Model:
    Config: ClassVar[type[ModelConfig]]
    type_name: ClassVar[str]
    monitor: ClassVar[str] = "val_loss"  # default metric for best checkpoint / early stopping
    monitor_mode: ClassVar[str] = "min"

    def __init__(self, config: ModelConfig, loss_spec: Any = None):
        self.config = config
        self.loss_spec = loss_spec
        self.ctx: dict[str, Any] = {}
        self.rng: np.random.Generator | None = None

    def setup(self, info, rng: np.random.Generator) -> None:
        self.rng = rng
        self.build(info)

    def build(self, info) -> None:
        raise NotImplementedError

    def networks(self) -> dict[str, Layer]:
        """The named root layers; parameter names are prefixed with these names."""
        raise NotImplementedError

    def train_batch(self, x, y) -> dict[str, float]:
        raise NotImplementedError

    def eval_batch(self, x, y) -> dict[str, float]:
        raise NotImplementedError

    # -- shared helpers ------------------------------------------------------
    def setup_net(self, field: str, net: Layer, in_shape, input_grad: bool = False) -> tuple[int, ...]:
        """Build one network, pointing shape errors at this model's config field.

        ``input_grad``: whether backward must return the gradient of the network's
        input (a decoder's latent) or may skip it (data).
        """
        net.needs_input_grad = input_grad
        try:
            return net.setup(in_shape, self.rng, self.ctx)
        except ShapeError as e:
            if e.path[:1] == ["layers"]:
                e.path[0] = field
            raise

    def params(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        return [item for name, net in self.networks().items() for item in named_params(net, f"{name}.")]

    def buffers(self) -> Iterator[tuple[str, np.ndarray, Layer, str]]:
        for name, net in self.networks().items():
            yield from named_buffers(net, f"{name}.")

    def num_params(self) -> int:
        return sum(p.size for _, p, _ in self.params())


def register_model(name: str):
    def add(cls):
        field_ = cls.Config.model_fields.get("type")
        if field_ is None or field_.default != name:
            raise TypeError(f"{cls.__name__}.Config must declare type: Literal['{name}'] = '{name}'")
        return MODELS.register(name)(cls)

    return add
