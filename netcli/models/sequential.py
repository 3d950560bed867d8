"""Classifier and regressor: one sequential network trained on a supervised loss."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..errors import UserError
from ..layers.base import ShapeError
from ..layers.container import Sequential
from ..layers.dense import Dense
from ..losses import TARGET_TEXT, losses_for, make_loss
from .base import LossError, Model, ModelCase, ModelConfig, register_model


class _Supervised(Model):
    default_loss: str
    capabilities = frozenset({"predict"})

    def build(self, info):
        self.net = Sequential(Sequential.Config(layers=self.config.layers))
        out = self.setup_net("layers", self.net, info.input_shape)
        self.check_output(out, info)
        self.num_classes = info.num_classes
        self.loss = make_loss(self.loss_spec or self.default_loss)

    def check_targets(self, y):
        """Refuse a loss that is not defined for these targets' kinds (the most general first): it would
        crash in the first step, or train on nonsense (cross_entropy over one output is always 0)."""
        kinds = self.target_kinds(y)
        if not set(self.loss.targets) & set(kinds):
            takes = " or ".join(TARGET_TEXT[k] for k in self.loss.targets)
            raise LossError(f"{self.loss.type_name} needs targets that are {takes}, but this {self.type_name}'s "
                            f"are {TARGET_TEXT[kinds[0]]}; use {' or '.join(losses_for(kinds))}")

    def networks(self):
        return {"net": self.net}

    def predict(self, x):
        return self.net.forward(x, training=False)

    def train_batch(self, x, y):
        out = self.net.forward(x, training=True)
        loss = self.loss.forward(out, y)
        self.net.backward(self.loss.backward())
        return {"loss": loss, **self.metrics(out, y)}

    def eval_batch(self, x, y):
        out = self.net.forward(x, training=False)
        return {"loss": self.loss.forward(out, y), **self.metrics(out, y)}


@register_model("classifier")
class Classifier(_Supervised):
    """Logits (N, C) for labels (N,), or per-token logits (N, T, C) for labels (N, T)."""

    class Config(ModelConfig):
        type: Literal["classifier"] = "classifier"
        layers: list["LayerSpec"] = Field(min_length=1, description="the network, input to logits")  # noqa: F821

    default_loss = "cross_entropy"
    task = "classification"
    capabilities = frozenset({"predict", "features"})
    monitor, maximize = "val_accuracy", frozenset({"accuracy", "sequence_accuracy"})

    @classmethod
    def grad_cases(cls):
        mlp = [{"type": "dense", "units": 5}, "tanh", {"type": "dense", "units": 3}]
        tokens = [{"type": "dense", "units": 4}, "relu", {"type": "dense", "units": 3}]
        return [ModelCase({"layers": mlp}, (4,), "labels", num_classes=3),
                ModelCase({"layers": tokens}, (5, 2), "labels", (5,), num_classes=3, note="per-token labels")]

    def target_kinds(self, y):
        return ("labels",)  # of info.target_shape; check_output asks for logits of num_classes

    def check_output(self, out, info):
        expect = (*info.target_shape, info.num_classes)
        if tuple(out) != expect:
            raise ShapeError(f"the network ends in shape {tuple(out)} but {info.num_classes} classes "
                             f"need logits of shape {expect} (end with a dense layer of {info.num_classes} units)",
                             ["layers"])

    def evaluate(self, x, y, batch_size=256):
        """The mean metrics and, for one label per sample, per-class accuracy and the confusion matrix."""
        result = super().evaluate(x, y, batch_size)
        if y.ndim == 1:
            pred = np.concatenate([self.predict(x[i:i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)])
            k = self.num_classes
            cm = np.zeros((k, k), dtype=np.int64)
            np.add.at(cm, (y.astype(np.int64), pred), 1)
            result["per_class_accuracy"] = (np.diag(cm) / np.maximum(cm.sum(1), 1)).round(4).tolist()
            result["confusion_matrix"] = cm.tolist()
        return result

    def features(self, x):
        """The input of the network's last top-level dense layer, flat (N, F), and the logits (N, K)."""
        layers = self.net.layers
        last = max((i for i, layer in enumerate(layers) if isinstance(layer, Dense)), default=None)
        if last is None:
            raise UserError("the classifier has no dense layer whose input could serve as features")
        h = x
        for layer in layers[:last]:
            h = layer.forward(h, training=False)
        feats = h.reshape(len(h), -1)
        for layer in layers[last:]:
            h = layer.forward(h, training=False)
        return feats, h

    def metrics(self, logits, y):
        pred = logits.argmax(-1)
        ignore = getattr(self.loss.config, "ignore_index", None)  # labels the loss leaves out (not soft targets)
        counted = y != ignore if ignore is not None and y.ndim == pred.ndim else np.ones(pred.shape, bool)
        if y.ndim == pred.ndim + 1:  # one-hot or soft targets
            y = y.argmax(-1)
        hit = pred == y
        # over counted positions only; a batch with none counts as right (as an empty sequence does)
        m = {"accuracy": float(hit[counted].mean()) if counted.any() else 1.0}
        if hit.ndim > 1:  # per-token labels: also whole sequences right at every counted position
            m["sequence_accuracy"] = float((hit | ~counted).reshape(len(hit), -1).all(axis=1).mean())
        return m


@register_model("regressor")
class Regressor(_Supervised):
    """Real-valued predictions (N, k) for targets (N, k), trained on MSE by default."""

    class Config(ModelConfig):
        type: Literal["regressor"] = "regressor"
        layers: list["LayerSpec"] = Field(min_length=1, description="the network, input to prediction")  # noqa: F821

    default_loss = "mse"
    task = "regression"

    @classmethod
    def grad_cases(cls):
        return [ModelCase({"layers": [{"type": "dense", "units": 5}, "tanh", {"type": "dense", "units": 3}]},
                          (4,), "values", (3,))]

    def target_kinds(self, y):
        """Real values; also values in [0, 1] and rows of probabilities (of 2 or more) where they are."""
        kinds = ("real",)
        if y.size and y.min() >= 0 and y.max() <= 1:
            kinds += ("binary",)
            if y.ndim > 1 and y.shape[-1] > 1 and np.allclose(y.sum(-1), 1, atol=1e-4):
                kinds += ("probs",)
        return kinds

    def check_output(self, out, info):
        if tuple(out) != tuple(info.target_shape):
            raise ShapeError(f"the network ends in shape {tuple(out)} but the targets have shape "
                             f"{tuple(info.target_shape)}", ["layers"])

    def evaluate(self, x, y, batch_size=256):
        """The mean metrics, the targets' variance (the MSE of always predicting their mean) and R^2."""
        result = super().evaluate(x, y, batch_size)
        var = float(np.var(y, axis=0).mean())
        result["metrics"]["target_variance"] = var
        result["metrics"]["r2"] = 1.0 - result["metrics"]["mse"] / var if var > 0 else float("nan")
        return result

    def metrics(self, pred, y):
        err = pred - y.reshape(pred.shape)
        return {"mse": float(np.mean(err ** 2)), "mae": float(np.mean(np.abs(err)))}
