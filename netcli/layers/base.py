"""The layer contract (after Caffe's): build from the input shape, forward, backward.

    layer = Dense(units=10)                  # or Dense(Dense.Config(units=10))
    out_shape = layer.setup((784,), rng)     # calls build(in_shape); no batch dim
    y = layer.forward(x, training=True)      # caches what backward needs
    dx = layer.backward(dy)                  # returns dL/dx, ADDS dL/dparam into grads

- ``params`` and ``grads`` are dicts with the same keys; gradients accumulate
  until the optimizer zeroes them after a step. A layer makes its arrays in
  ``build`` (``add_param``); once a model is built they are views into the
  model's flat buffers (netcli/params.py), so a layer must read them from the
  dicts, not keep references of its own made before that.
- ``buffers`` holds non-learnable state that a checkpoint must keep
  (BatchNorm's running statistics).
- ``Config`` is the layer's pydantic model: the YAML shape of the layer and the
  single source of truth for its options.
- side inputs of a batch that are not differentiated (a key padding mask, the
  diffusion timesteps) travel in a typed ``Context`` (layers/context.py),
  passed explicitly: a layer that reads one sets ``uses_context`` and takes
  ``forward(x, training, ctx)``; ``call`` is how a container calls a child.
- ``needs_input_grad`` is cleared by the container when nothing before the
  layer learns (the first layer of a model sees only data): backward may then
  skip dL/dx and return None, and the container stops there.
- a composite builds its children in ``build`` with ``child(name, spec,
  in_shape)``, which names them by attribute: parameter keys are stable
  paths (``blocks.0.attn.q.W``), a list of layers is a ``Sequential``.
- ``grad_cases()`` lists the shapes and options the registry-wide gradient
  check runs; a layer without it fails that test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..registry import LAYERS, register_layer  # noqa: F401  (the public decorator, re-exported)
from .context import Context


class ShapeError(ValueError):
    """A layer cannot take the shape it is given (e.g. a kernel larger than its input).

    ``path`` is the position of the failing layer in the config (list indices and
    keys), filled in by the containers it passes through.
    """

    def __init__(self, message: str, path: list | None = None):
        super().__init__(message)
        self.message = message
        self.path: list = path or []


class LayerConfig(BaseModel):
    """Base of every layer's Config: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    type: str


@dataclass
class GradCase:
    """One gradient-check case: a layer config and an input shape (no batch dim)."""

    config: dict[str, Any]
    in_shape: tuple[int, ...]
    batch: int = 3
    training: bool = True
    int_high: int | None = None  # integer inputs drawn from [0, int_high) (no input gradient)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Layer:
    Config: ClassVar[type[LayerConfig]]
    type_name: ClassVar[str]
    uses_context: ClassVar[bool] = False  # forward(x, training, ctx): reads, writes or passes on the Context
    is_list: ClassVar[bool] = False  # a plain list of layers (Sequential): `netcli summary` shows its children
    reads_next_layer: ClassVar[bool] = False  # init "auto" depends on what follows: its container sets next_layer
    min_train_batch: int = 1  # samples a training batch needs (batchnorm over features: 2; build may set it)

    def __init__(self, config: LayerConfig | None = None, **options: Any):
        if config is None:
            config = self.Config(type=self.type_name, **options)
        self.config = config
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.rng: np.random.Generator | None = None
        self.in_shape: tuple[int, ...] | None = None
        self.out_shape: tuple[int, ...] | None = None
        self.needs_input_grad = True  # set before setup by the container (see the module notes)
        self.children: dict[str, Layer] = {}  # made by child() in build; names are parts of parameter keys

    # -- the contract --------------------------------------------------------
    def setup(self, in_shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        """Attach the run's generator, build from ``in_shape``, return the output shape."""
        self.rng = rng
        self.in_shape = tuple(int(d) for d in in_shape)
        self.children = {}
        self.out_shape = tuple(int(d) for d in self.build(self.in_shape))
        return self.out_shape

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Create parameters for ``in_shape``; return the output shape. Default: no params."""
        return in_shape

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def call(self, x: np.ndarray, training: bool, ctx: Context) -> np.ndarray:
        """Forward as a container calls it: with the batch's context if the layer reads it."""
        return self.forward(x, training, ctx) if self.uses_context else self.forward(x, training)

    @classmethod
    def grad_cases(cls) -> list[GradCase]:
        raise NotImplementedError(f"layer '{cls.type_name}' lists no gradient-check cases")

    # -- helpers -------------------------------------------------------------
    def add_param(self, name: str, value: np.ndarray) -> np.ndarray:
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)
        return value

    def child(self, name: str, layer: "Layer | LayerConfig | dict | str", in_shape: tuple[int, ...],
              needs_input_grad: bool = True) -> "Layer":
        """Make a child layer (from a Layer, a Config, or a spec like ``{"type": "dense", "units": 4}``),
        build it for ``in_shape`` with this layer's generator and context, and keep it under ``name``.

        ``name`` is the child's part of the checkpoint key of every parameter below it
        (``blocks.0.attn.q.W``), so it must say what the child is, not where it sits in a list.
        Children are built, and their parameters drawn, in the order of the calls.
        """
        if not isinstance(layer, Layer):
            layer = LAYERS.build(layer)
        layer.needs_input_grad = needs_input_grad
        layer.setup(in_shape, self.rng)
        self.children[name] = layer
        return layer

    def flops(self) -> int:
        """Forward multiply-adds x2 for one sample (0 where negligible)."""
        return 0

    def describe(self) -> str:
        """A short text of the options, for `netcli summary`."""
        opts = self.config.model_dump(exclude={"type"}, exclude_defaults=True)
        nested = lambda v: isinstance(v, (dict, list)) and any(isinstance(i, dict) for i in v)  # noqa: E731
        return ", ".join(f"{k}={v}" for k, v in opts.items() if not nested(v))


def walk(layer: Layer, prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """Yield (path, layer) for a layer and all its children, depth first, paths joined by their names."""
    yield prefix, layer
    for name, child in layer.children.items():
        yield from walk(child, f"{prefix}{name}.")


def has_params(layer: Layer) -> bool:
    return any(True for _ in named_params(layer))


def named_params(layer: Layer, prefix: str = "") -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield (name, param, grad) for every learnable array below ``layer``."""
    for path, sub in walk(layer, prefix):
        for key, p in sub.params.items():
            yield f"{path}{key}", p, sub.grads[key]


def named_buffers(layer: Layer, prefix: str = "") -> Iterator[tuple[str, np.ndarray, Layer, str]]:
    for path, sub in walk(layer, prefix):
        for key, b in sub.buffers.items():
            yield f"{path}{key}", b, sub, key
