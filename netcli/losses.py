"""Losses: a forward that returns the mean loss and a backward that returns dL/dpred.

    loss = make_loss("cross_entropy")            # or {"type": "cross_entropy", "label_smoothing": 0.1}
    value = loss.forward(logits, labels)         # a float, the mean over the batch; caches what backward needs
    dlogits = loss.backward()                    # gradient of that mean with respect to ``logits``

Every loss averages like PyTorch's ``reduction="mean"``: over every element of
``pred`` for the elementwise losses (mse, mae, huber, binary_cross_entropy), and
over every predicted position (rows of the last axis) for cross_entropy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .registry import LOSSES, register_loss


class LossConfig(BaseModel):
    """Base of every loss's Config: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    type: str


TargetKind = Literal["real", "labels", "probs", "binary"]


@dataclass
class LossCase:
    """One gradient-check case: a loss config, the shape of ``pred`` and the kind of target.

    Target kinds: ``real`` (same shape as pred, standard normal), ``labels``
    (integers in [0, C) with pred's shape minus its last axis), ``probs`` (rows
    of pred's shape summing to 1) and ``binary`` (0/1 in pred's shape).
    """

    config: dict[str, Any]
    pred_shape: tuple[int, ...]
    target: TargetKind
    note: str = ""

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A float64 ``pred`` and a matching target drawn from ``rng``."""
        pred = rng.standard_normal(self.pred_shape)
        if self.target == "real":
            target = rng.standard_normal(self.pred_shape)
        elif self.target == "labels":
            target = rng.integers(0, self.pred_shape[-1], self.pred_shape[:-1])
        elif self.target == "probs":
            target = rng.dirichlet(np.ones(self.pred_shape[-1]), self.pred_shape[:-1])
        else:
            target = rng.integers(0, 2, self.pred_shape).astype(np.float64)
        return pred, target


TARGET_TEXT = {"real": "real values", "labels": "class labels", "probs": "class probabilities",
               "binary": "values in [0, 1]"}


class Loss:
    Config: ClassVar[type[LossConfig]]
    type_name: ClassVar[str]
    targets: ClassVar[tuple[TargetKind, ...]]  # the kinds of target it is defined for (a model checks its data's)

    def __init__(self, config: LossConfig | None = None, **options: Any):
        self.config = config if config is not None else self.Config(type=self.type_name, **options)

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def grad_cases(cls) -> list[LossCase]:
        raise NotImplementedError(f"loss '{cls.type_name}' lists no gradient-check cases")


make_loss = LOSSES.build  # (spec: name | dict | Config) -> Loss


def losses_for(kinds) -> list[str]:
    """Names of the registered losses defined for one of these kinds of target."""
    return [name for name in LOSSES.names() if set(LOSSES.get(name).targets) & set(kinds)]


def _target_like(name: str, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The target in pred's dtype (so float64 labels never turn a float32 backward into float64)."""
    if pred.shape != target.shape:
        raise ValueError(f"{name}: target shape {target.shape} differs from prediction shape {pred.shape}")
    return target.astype(pred.dtype, copy=False)


# -- regression ----------------------------------------------------------------

@register_loss("mse")
class MSE(Loss):
    """Mean squared error, mean((pred - target)^2)."""

    targets = ("real",)

    class Config(LossConfig):
        type: Literal["mse"] = "mse"

    def forward(self, pred, target):
        target = _target_like("mse", pred, target)
        self.diff = pred - target
        return float(np.vdot(self.diff, self.diff)) / self.diff.size

    def backward(self):
        return self.diff * (2.0 / self.diff.size)

    @classmethod
    def grad_cases(cls):
        return [LossCase({}, (4, 3), "real"), LossCase({}, (2, 3, 4), "real")]


@register_loss("mae")
class MAE(Loss):
    """Mean absolute error (L1), mean(|pred - target|); the gradient at a tie is 0, as in PyTorch."""

    targets = ("real",)

    class Config(LossConfig):
        type: Literal["mae"] = "mae"

    def forward(self, pred, target):
        target = _target_like("mae", pred, target)
        self.diff = pred - target
        return float(np.abs(self.diff).mean())

    def backward(self):
        return np.sign(self.diff) / self.diff.size

    @classmethod
    def grad_cases(cls):
        return [LossCase({}, (4, 3), "real")]


@register_loss("huber")
class Huber(Loss):
    """Huber loss: quadratic for |pred - target| <= delta, linear beyond (PyTorch's huber_loss)."""

    targets = ("real",)

    class Config(LossConfig):
        type: Literal["huber"] = "huber"
        delta: float = Field(1.0, gt=0, description="where the loss turns from quadratic to linear")

    def forward(self, pred, target):
        target = _target_like("huber", pred, target)
        d = self.config.delta
        self.diff = pred - target
        a = np.abs(self.diff)
        per = np.where(a <= d, 0.5 * self.diff**2, d * (a - 0.5 * d))
        return float(per.mean())

    def backward(self):
        d = self.config.delta
        return np.clip(self.diff, -d, d) / self.diff.size

    @classmethod
    def grad_cases(cls):
        return [LossCase({}, (4, 3), "real"), LossCase({"delta": 0.5}, (2, 3, 2), "real")]


# -- classification ------------------------------------------------------------

@register_loss("cross_entropy")
class CrossEntropy(Loss):
    """Softmax cross-entropy on logits over the last axis, fused with a stable log-softmax.

    ``pred`` is (N, C) or (N, T, C); ``target`` is either integer labels of
    pred's shape without the class axis, or (soft) class probabilities of
    pred's shape. With label smoothing e the target becomes (1 - e) q + e / C.
    Labels equal to ``ignore_index`` add nothing and are left out of the mean.
    """

    targets = ("labels", "probs")

    class Config(LossConfig):
        type: Literal["cross_entropy"] = "cross_entropy"
        label_smoothing: float = Field(0.0, ge=0, le=1, description="mix the target with the uniform distribution")
        ignore_index: int | None = Field(None, description="a label value that is skipped (padding tokens)")

    def forward(self, pred, target):
        C = pred.shape[-1]
        logits = pred.reshape(-1, C)  # (M, C), M = every predicted position
        z = logits - logits.max(axis=1, keepdims=True)  # (M, C), max 0: exp cannot overflow
        p = np.exp(z)
        s = p.sum(axis=1, keepdims=True)  # (M, 1)
        p /= s  # softmax
        lse = np.log(s)[:, 0]  # (M,) log-sum-exp of z, so log p = z - lse
        q, valid = self._target(target, pred.shape, pred.dtype)  # (M, C) or labels (M,)
        eps = self.config.label_smoothing
        if q.ndim == 1:  # integer labels: sum_c q_c = 1
            per = lse - np.take_along_axis(z, q[:, None], axis=1)[:, 0]  # -log p[label]
            if eps:
                per = (1 - eps) * per + eps * (lse - z.mean(axis=1))
            q_sum = 1.0
        else:
            if eps:
                q = (1 - eps) * q + eps / C
            q_sum = q.sum(axis=1)  # (M,)
            per = lse * q_sum - np.einsum("mc,mc->m", q, z)  # -sum_c q_c log p_c
        if valid is not None:
            per = per[valid]
        self.count = max(per.size, 1)
        self.p, self.q, self.q_sum, self.valid, self.shape = p, q, q_sum, valid, pred.shape
        return float(per.sum()) / self.count

    def backward(self):
        # d(-sum_c q_c log p_c)/dz = p sum(q) - q
        q, eps, C = self.q, self.config.label_smoothing, self.p.shape[1]
        if q.ndim == 1:
            d = self.p - eps / C
            d[np.arange(len(q)), q] -= 1 - eps
        else:
            d = self.p * np.asarray(self.q_sum)[:, None] - q
        if self.valid is not None:
            d[~self.valid] = 0
        d /= self.count
        return d.reshape(self.shape)

    def _target(self, target, shape, dtype):
        """Flatten the target to labels (M,) or probabilities (M, C); a mask of counted rows or None."""
        C = shape[-1]
        if np.issubdtype(target.dtype, np.integer):
            if target.shape != shape[:-1]:
                raise ValueError(f"cross_entropy: labels of shape {target.shape} do not match logits {shape}; "
                                 f"expected {shape[:-1]}")
            labels = target.reshape(-1)
            valid = None
            if self.config.ignore_index is not None:
                valid = labels != self.config.ignore_index
                labels = np.where(valid, labels, 0)
            if labels.size and (labels.min() < 0 or labels.max() >= C):
                raise ValueError(f"cross_entropy: labels must lie in [0, {C}), got {labels.min()}..{labels.max()}")
            return labels, valid
        if target.shape != shape:
            raise ValueError(f"cross_entropy: soft targets of shape {target.shape} do not match logits {shape}")
        return target.reshape(-1, C).astype(dtype, copy=False), None

    @classmethod
    def grad_cases(cls):
        return [
            LossCase({}, (4, 5), "labels"),
            LossCase({}, (4, 5), "probs", note="soft targets"),
            LossCase({"label_smoothing": 0.1}, (4, 5), "labels"),
            LossCase({"label_smoothing": 0.2}, (3, 4), "probs"),
            LossCase({}, (2, 3, 4), "labels", note="per-token labels"),
            LossCase({"ignore_index": 0}, (3, 4, 3), "labels", note="positions labelled 0 are skipped"),
        ]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow: exp only ever sees -|x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@register_loss("binary_cross_entropy")
class BinaryCrossEntropy(Loss):
    """Sigmoid cross-entropy on logits, stable form max(x, 0) - x y + log(1 + exp(-|x|))."""

    targets = ("binary", "probs")

    class Config(LossConfig):
        type: Literal["binary_cross_entropy"] = "binary_cross_entropy"

    def forward(self, pred, target):
        self.x, self.y = pred, _target_like("binary_cross_entropy", pred, target)
        per = np.maximum(pred, 0) - pred * self.y + np.log1p(np.exp(-np.abs(pred)))
        return float(per.mean())

    def backward(self):
        return (_sigmoid(self.x) - self.y) / self.x.size

    @classmethod
    def grad_cases(cls):
        return [LossCase({}, (4, 3), "binary"), LossCase({}, (3, 5), "probs", note="soft targets in [0, 1]")]
