"""The model contract: a model owns its networks, its loss, its training step and what it can do.

    model = MODELS.build(cfg.model, cfg.loss)
    model.setup(info, rng)              # info: input_shape, target_shape, num_classes (a data Splits)
    model.check_targets(train_y)        # LossError when the loss does not fit the data's targets
    model.optimizers()                  # {"main": ("net",)}: each named optimizer and the networks it updates
    metrics = model.train_step(x, y, step)   # gradients, then step(name, loss) per optimizer, in order
    metrics = model.train_batch(x, y)   # (one-optimizer models) forward + loss + backward; grads accumulate
    metrics = model.eval_batch(x, y)    # forward in eval mode, no gradients
    result = model.evaluate(x, y, bs)   # {"metrics": ..., and whatever else the type reports}
    "sample" in model.capabilities      # what it can do beyond training: see CAPABILITIES

Metrics are batch means (floats); the trainer weights them by batch size.
``loss`` is always one of them and is what the optimizers minimise. The
trainer is generic: it makes one optimizer per name in ``optimizers()`` over
those networks' parameters (views into ``self.parameters``) and never asks
which type of model it holds; ``step(name, loss)`` checks, clips and applies
that optimizer's update. A model with two optimizers (a GAN) computes the
discriminator's gradients, calls ``step("discriminator", loss)``, then the
generator's and ``step("generator", loss)``. A model that knows its metrics by
its last step hands them over there, ``step(name, loss, metrics)``: under
mpiexec they then ride in the same all-reduce as the gradients (otherwise the
trainer averages them in one more after the step).

Application code (netcli/app/) asks ``require(model, capability, what)`` instead
of testing type names, and the monitored metric's direction comes from
``metric_mode`` (the type's ``maximize`` set) unless the config says.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict

from .. import backend as B
from ..errors import UserError
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


class LossError(ValueError):
    """A loss that does not fit the model or its data; reported at the config's ``loss`` key."""


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str


# What a model type can do beyond training: the verb of error messages, and the methods it promises.
CAPABILITIES = {
    "predict": ("predict", "predict(x) -> outputs (N, ...): logits of a classifier, values of a regressor"),
    "features": ("give classifier features", "features(x) -> (penultimate features (N, F), logits (N, K))"),
    "sample": ("sample", "sample(n, rng, steps=None, progress=None) -> n new inputs in [0, 1]"),
    "reconstruct": ("reconstruct", "reconstruct(x) -> x's reconstruction in [0, 1]"),
    "latent": ("encode and decode", "encode(x) -> codes (N, L); decode(z) -> inputs in [0, 1]"),
}


class Model:
    Config: ClassVar[type[ModelConfig]]
    type_name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()  # names from CAPABILITIES
    monitor: ClassVar[str] = "val_loss"  # default metric for best checkpoint / early stopping
    maximize: ClassVar[frozenset[str]] = frozenset()  # metrics where higher is better (the rest: lower)
    task: ClassVar[str | None] = None  # the data's task it trains on (classification, regression); None: any

    def __init__(self, config: ModelConfig, loss_spec: Any = None):
        self.config = config
        self.loss_spec = loss_spec
        self.rng: np.random.Generator | None = None
        self.parameters: ParamGroup = ParamGroup([])

    def setup(self, info, rng: np.random.Generator) -> None:
        """Build the networks, then move their parameters into one buffer per dtype (``self.parameters``)."""
        self.rng = rng
        self.build(info)
        self.parameters = pack(self.networks().items())

    def build(self, info) -> None:
        raise NotImplementedError

    def check_targets(self, y: np.ndarray) -> None:
        """Refuse (LossError) a loss that does not fit the training targets ``y``; a model whose loss is
        its own has nothing to check. Called where the data is at hand (build_experiment), not by setup."""

    def networks(self) -> dict[str, Layer]:
        """The named root layers; parameter names are prefixed with these names."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, tuple[str, ...]]:
        """Each named optimizer and the networks whose parameters it updates (default: one over all)."""
        return {"main": tuple(self.networks())}

    def train_step(self, x, y, step: Callable[..., None]) -> dict[str, float]:
        """Train on one batch: compute gradients, then ``step(name, loss)`` for each optimizer in turn
        (the last with the batch's metrics: ``step(name, loss, metrics)``)."""
        metrics = self.train_batch(x, y)
        step("main", metrics["loss"], metrics)
        return metrics

    def train_batch(self, x, y) -> dict[str, float]:
        raise NotImplementedError

    def eval_metrics(self, x, y, batch_size: int = 256) -> dict[str, float]:
        """Sample-weighted means of eval_batch's metrics over a whole split (validation, `netcli eval`)."""
        sums: dict[str, float] = {}
        for i in range(0, len(x), batch_size):
            xb, yb = B.as_input(x[i:i + batch_size]), B.as_input(y[i:i + batch_size])  # a float64 run in float64
            for k, v in self.eval_batch(xb, yb).items():
                sums[k] = sums.get(k, 0.0) + v * len(xb)
        return {k: v / len(x) for k, v in sums.items()}

    def evaluate(self, x, y, batch_size: int = 256) -> dict[str, Any]:
        """The report of `netcli eval`: ``{"metrics": eval_metrics(...)}``; a type may add to it."""
        return {"metrics": self.eval_metrics(x, y, batch_size)}

    def metric_mode(self, metric: str) -> str:
        """"max" if higher is better for ``metric`` (``val_accuracy``, ``train_accuracy``, ...), else "min"."""
        name = metric.removeprefix("train_").removeprefix("val_")
        return "max" if name in self.maximize else "min"

    def sample_steps(self, steps: int | None) -> int | None:
        """The sampling steps to use (``--steps``); a type whose sampler has none refuses a number."""
        if steps is not None:
            raise UserError(f"--steps: the sampler of a {self.type_name} model has no steps to set")
        return None

    def max_sample_steps(self) -> int | None:
        """The most sampling steps ``sample_steps`` takes (None: the sampler has no steps to set)."""
        return None

    def describe_sampler(self, steps: int | None) -> str:
        return "prior"

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
            return net.setup(in_shape, self.rng)
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


def require(model: Model, capability: str | tuple[str, ...], what: str) -> str:
    """The first of ``capability`` (one name or alternatives, in order of preference) that ``model`` has.

    A UserError when it has none, naming the model types that have one (from the registry):
    ``sample needs a model that can sample or reconstruct (vae, ddpm, autoencoder); a classifier model cannot``.
    """
    wanted = (capability,) if isinstance(capability, str) else capability
    for name in wanted:
        if name in model.capabilities:
            return name
    from ..registry import MODELS

    able = [name for name, cls in MODELS.items() if cls.capabilities & set(wanted)]
    raise UserError(f"{what} needs a model that can {' or '.join(CAPABILITIES[c][0] for c in wanted)} "
                    f"({', '.join(able) or 'none registered'}); a {model.type_name} model cannot")
