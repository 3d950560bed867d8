"""Central-difference gradient checking in float64.

A layer's scalar objective is a random projection of its output,
``L = sum(R * layer(x))``, so ``dL/dy = R`` exercises every output element
with a different weight. The analytic gradients from ``backward(R)`` are
compared with ``(L(v + eps) - L(v - eps)) / 2 eps`` entry by entry, for the
input and every parameter; the error of an array is
``|analytic - numeric|_2 / (|analytic|_2 + |numeric|_2)``.

Stochastic layers (dropout) are re-seeded before every forward pass, so each
evaluation sees the same mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import backend as B
from .layers.base import GradCase, Layer, named_params, walk
from .layers.context import Context
from .params import ParamGroup
from .registry import LAYERS

EPS = 1e-6


@dataclass
class GradReport:
    errors: dict[str, float]  # array name -> relative error

    @property
    def worst(self) -> tuple[str, float]:
        return max(self.errors.items(), key=lambda kv: kv[1]) if self.errors else ("-", 0.0)

    def ok(self, tol: float = 1e-6) -> bool:
        return all(e < tol for e in self.errors.values())

    def __str__(self) -> str:
        return ", ".join(f"{k}: {v:.2e}" for k, v in self.errors.items())


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    den = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return 0.0 if den == 0 else float(np.linalg.norm(analytic - numeric) / den)


def numeric_grad(f: Callable[[], float], arr: np.ndarray, idx: np.ndarray, eps: float = EPS) -> np.ndarray:
    """d f / d arr at the flat indices ``idx``, perturbing ``arr`` in place."""
    flat = arr.reshape(-1)
    assert np.shares_memory(flat, arr), "arrays under check must be contiguous"
    out = np.empty(len(idx))
    for k, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        out[k] = (fp - fm) / (2 * eps)
    return out


def sample_indices(size: int, rng: np.random.Generator, max_entries: int) -> np.ndarray:
    return np.arange(size) if size <= max_entries else np.sort(rng.choice(size, max_entries, replace=False))


def reseed(layer: Layer, seed: int) -> None:
    for _, sub in walk(layer):
        sub.rng = np.random.default_rng(seed)


def check_arrays(loss: Callable[[], float], backward: Callable[[], dict[str, np.ndarray]],
                 arrays: dict[str, np.ndarray], rng: np.random.Generator,
                 max_entries: int = 300) -> GradReport:
    """Compare ``backward()``'s gradients with finite differences of ``loss()``.

    ``arrays`` maps names to the float64 arrays ``loss`` reads (perturbed in
    place); ``backward`` returns the analytic gradient of each name.
    """
    analytic = backward()
    errors = {}
    for name, arr in arrays.items():
        idx = sample_indices(arr.size, rng, max_entries)
        num = numeric_grad(loss, arr, idx)
        errors[name] = rel_error(np.asarray(analytic[name]).reshape(-1)[idx], num)
    return GradReport(errors)


def make_layer(layer_type: str, config: dict) -> Layer:
    cls = LAYERS.get(layer_type)
    return cls(cls.Config(type=layer_type, **config))


def _layer_and_input(layer_type: str, case: GradCase, seed: int) -> tuple[Layer, np.ndarray, np.random.Generator]:
    """The case's layer, built (parameters from ``seed + 1``), a batch of input for it, and the generator
    that drew the input (for what the check draws next). Call inside a float64 scope."""
    rng = np.random.default_rng(seed)
    layer = make_layer(layer_type, case.config)
    layer.setup(case.in_shape, np.random.default_rng(seed + 1))
    shape = (case.batch, *case.in_shape)
    x = rng.integers(0, case.int_high, shape) if case.int_high is not None else rng.standard_normal(shape)
    return layer, x, rng


def check_layer(layer_type: str, case: GradCase, seed: int = 0) -> GradReport:
    """Gradient-check one registered layer on one case, in float64."""
    with B.dtype_scope("float64"):
        layer, x, rng = _layer_and_input(layer_type, case, seed)
        y = _forward(layer, x, case, seed)
        R = rng.standard_normal(y.shape)

        def loss() -> float:
            return float(np.sum(R * _forward(layer, x, case, seed)))

        def backward() -> dict[str, np.ndarray]:
            ParamGroup.of(named_params(layer)).zero_grad()
            _forward(layer, x, case, seed)
            dx = layer.backward(R.copy())
            grads = {f"param {n}": g.copy() for n, g in _named(layer, "grads").items()}
            if case.int_high is None:
                grads["input"] = dx
            return grads

        arrays = {f"param {n}": p for n, p in _named(layer, "params").items()}
        if case.int_high is None:
            arrays["input"] = x
        return check_arrays(loss, backward, arrays, rng)


def check_model(model_type: str, case, seed: int = 0, max_entries: int = 60) -> GradReport:
    """Gradient-check a registered model type's ``train_batch`` (its whole loss) on one ModelCase, in float64.

    The model's random draws (noise, timesteps, dropout masks) are replayed from the same generator
    state for every evaluation, so the loss is a fixed function of the parameters.
    """
    from .registry import MODELS

    with B.dtype_scope("float64"):
        rng = np.random.default_rng(seed)
        model = MODELS.build({"type": model_type, **case.config})
        model.setup(case, np.random.default_rng(seed + 1))
        x, y = case.batch_arrays(rng)
        draws = model.rng.bit_generator.state

        def loss() -> float:
            model.rng.bit_generator.state = draws
            return float(model.train_batch(x, y)["loss"])

        def backward() -> dict[str, np.ndarray]:
            model.parameters.zero_grad()
            loss()
            return {n: g.copy() for n, _, g in model.params()}

        return check_arrays(loss, backward, {n: p for n, p, _ in model.params()}, rng, max_entries)


def _forward(layer: Layer, x: np.ndarray, case: GradCase, seed: int) -> np.ndarray:
    """One forward pass with the same random draws, and a fresh batch Context from the case's ``extra["ctx"]``."""
    reseed(layer, seed + 2)
    return layer.call(x, case.training, Context(**case.extra.get("ctx", {})))


def _named(layer: Layer, attr: str) -> dict[str, np.ndarray]:
    return {f"{path}{k}": v for path, sub in walk(layer) for k, v in getattr(sub, attr).items()}


def check_loss(loss_type: str, case, seed: int = 0) -> GradReport:
    """Gradient-check one registered loss on one case (a LossCase), in float64."""
    from .losses import make_loss

    rng = np.random.default_rng(seed)
    pred, target = case.sample(rng)
    loss = make_loss({"type": loss_type, **case.config})

    def backward() -> dict[str, np.ndarray]:
        loss.forward(pred, target)
        return {"prediction": loss.backward()}

    return check_arrays(lambda: loss.forward(pred, target), backward, {"prediction": pred}, rng)


# -- the contract beyond the numbers -------------------------------------------------------


def layer_contract(layer_type: str, case: GradCase, seed: int = 0) -> dict[str, bool]:
    """The layer leaves its input as it was, and a second backward adds to the gradients (2x after two)."""
    with B.dtype_scope("float64"):
        layer, x, rng = _layer_and_input(layer_type, case, seed)
        x0 = x.copy()
        y = _forward(layer, x, case, seed)
        R = rng.standard_normal(y.shape)
        layer.backward(R.copy())
        once = {n: g.copy() for n, g in _named(layer, "grads").items()}
        _forward(layer, x, case, seed)
        layer.backward(R.copy())
        twice = _named(layer, "grads")
        result = {"input untouched": bool(np.array_equal(x, x0))}
        if once:
            result["gradients accumulate"] = all(np.allclose(twice[n], 2 * g, rtol=1e-10, atol=1e-12)
                                                 for n, g in once.items())
        return result


def loss_contract(loss_type: str, case, seed: int = 0) -> dict[str, bool]:
    """The loss leaves its prediction and target as they were."""
    from .losses import make_loss

    pred, target = case.sample(np.random.default_rng(seed))
    p0, t0 = pred.copy(), target.copy()
    loss = make_loss({"type": loss_type, **case.config})
    loss.forward(pred, target)
    loss.backward()
    return {"inputs untouched": bool(np.array_equal(pred, p0) and np.array_equal(target, t0))}


# -- `netcli gradcheck`: every case of the chosen layers and losses ----------------------------


@dataclass
class CaseResult:
    kind: str                 # "layer" or "loss"
    name: str
    title: str                # the case: options and shape
    errors: dict[str, float]  # array -> relative error
    contract: dict[str, bool]
    problem: str = ""         # a case that could not run: why
    tol: float = 1e-6

    @property
    def worst(self) -> float:
        return max(self.errors.values(), default=0.0)

    @property
    def ok(self) -> bool:
        return not self.problem and bool(self.errors) and self.worst < self.tol and all(self.contract.values())


def check_targets(targets: list[str], tol: float = 1e-6) -> list[CaseResult]:
    """Check plugin files' layers and losses (``x.py`` or a module: what it registers) and built-ins by name."""
    from . import config as _config  # noqa: F401  (registers every built-in component first)
    from .errors import UserError
    from .plugins import is_file, load
    from .registry import LOSSES, did_you_mean

    names: list[tuple[str, str]] = []
    for target in targets:
        if is_file(target) or (target not in LAYERS and target not in LOSSES and "." in target):
            before = {("layer", n) for n in LAYERS.names()} | {("loss", n) for n in LOSSES.names()}
            plugin = load(target, None, target)
            found = [(k, n) for k, reg in (("layer", LAYERS), ("loss", LOSSES)) for n, cls in reg.items()
                     if (k, n) not in before or _defined_in(cls, plugin.file)]
            if not found:
                raise UserError(f"{target}: registers no layer or loss to check")
            names += [kn for kn in found if kn not in names]
        elif target in LAYERS:
            names.append(("layer", target))
        elif target in LOSSES:
            names.append(("loss", target))
        else:
            raise UserError(f"unknown layer or loss '{target}'{did_you_mean(target, LAYERS.names() + LOSSES.names())}"
                            "; give a name (netcli list layers), a plugin .py file or a module")
    return [result for kind, name in names for result in check_component(kind, name, tol)]


def _defined_in(cls, file) -> bool:
    import inspect
    from pathlib import Path

    try:
        return Path(inspect.getsourcefile(cls)).resolve() == file
    except TypeError:
        return False


def check_component(kind: str, name: str, tol: float = 1e-6) -> list[CaseResult]:
    from .registry import LOSSES

    cls = (LAYERS if kind == "layer" else LOSSES).get(name)
    try:
        cases = cls.grad_cases()
    except NotImplementedError:
        cases = []
    if not cases:
        return [CaseResult(kind, name, "-", {}, {}, "lists no gradient-check cases: add a grad_cases() classmethod", tol)]
    results = []
    for case in cases:
        shape = case.in_shape if kind == "layer" else case.pred_shape
        title = f"{case.config or 'defaults'} on {shape}" + (f" ({case.note})" if case.note else "")
        try:
            if kind == "layer":
                report, contract = check_layer(name, case), layer_contract(name, case)
            else:
                report, contract = check_loss(name, case), loss_contract(name, case)
        except Exception as e:  # a user's layer that crashes on its own case: report it, check the rest
            results.append(CaseResult(kind, name, title, {}, {}, f"{type(e).__name__}: {e}", tol))
            continue
        results.append(CaseResult(kind, name, title, report.errors, contract, "", tol))
    return results
