"""The model contract: a model owns its networks, its loss and its metrics.

    model = MODELS.get(cfg.type)(cfg, loss_spec)
    model.setup(info, rng)          # info: input_shape, task, num_classes (a data Splits)
    metrics = model.train_batch(x, y)   # forward + loss + backward; grads accumulate
    metrics = model.eval_batch(x, y)    # forward in eval mode, no gradients

Metrics are batch means (floats); the trainer weights them by batch size.
``loss`` is always one of them and is what the optimizer minimises.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..layers.base import Layer, ShapeError, named_buffers
from ..params import ParamGroup, pack
from ..registry import register_model  # noqa: F401  (the public decorator, re-exported)


@dataclass
class ModelCase:
    """One gradient-check case of a model type: its config and the data it is built for.

    Passed to ``Model.setup`` as the data description (input_shape, target_shape, num_classes);
    ``targets`` says what y to draw: class labels, real values, or none (the model learns x alone).
    """

    config: dict[str, Any]
    input_shape: tuple[int, ...]
    targets: str = "none"  # "labels" | "values" | "none"
    target_shape: tuple[int, ...] = ()
    num_classes: int | None = None
    batch: int = 4
    note: str = ""

    def batch_arrays(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """x in [0, 1) (pixels for the generative models) and y of the declared kind."""
        x = rng.random((self.batch, *self.input_shape))
        if self.targets == "labels":
            return x, rng.integers(0, self.num_classes, (self.batch, *self.target_shape))
        if self.targets == "values":
            return x, rng.standard_normal((self.batch, *self.target_shape))
        return x, np.zeros(self.batch)


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
        self.parameters: ParamGroup = ParamGroup([])

    def setup(self, info, rng: np.random.Generator) -> None:
        """Build the networks, then move their parameters into one buffer per dtype (``self.parameters``)."""
        self.rng = rng
        self.build(info)
        self.parameters = pack(self.networks().items())

    def build(self, info) -> None:
        raise NotImplementedError

    def networks(self) -> dict[str, Layer]:
        """The named root layers; parameter names are prefixed with these names."""
        raise NotImplementedError

    def train_batch(self, x, y) -> dict[str, float]:
        raise NotImplementedError

    @classmethod
    def grad_cases(cls) -> list[ModelCase]:
        """Cases of the registry-wide check of ``train_batch``'s gradients (tests/test_models.py)."""
        raise NotImplementedError(f"model type '{cls.type_name}' lists no gradient-check cases")

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
        """(name, param, grad) of every learnable array, as views into ``self.parameters``' buffers."""
        return self.parameters.named()

    def buffers(self) -> Iterator[tuple[str, np.ndarray, Layer, str]]:
        for name, net in self.networks().items():
            yield from named_buffers(net, f"{name}.")

    def num_params(self) -> int:
        return self.parameters.num_params()

