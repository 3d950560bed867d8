"""Autoencoder: encoder -> latent code -> decoder, trained to reconstruct its input.

The reconstruction loss is the model's own (``reconstruction``): ``bce``
treats the decoder's output as logits of pixel intensities in [0, 1] (binary
cross-entropy with soft targets), ``mse`` compares the output itself with the
input. Both are means over every pixel. ``recon_mse`` is the mean squared
error in pixel space (after the sigmoid for bce), comparable between the two.
"""
from __future__ import annotations

import zlib
from typing import Literal

import numpy as np
from pydantic import Field

from ..layers.base import ShapeError
from ..layers.container import Sequential
from ..losses import make_loss
from .base import LossError, Model, ModelCase, ModelConfig, register_model


def own_loss_only(model: Model, where: str) -> None:
    """Generative models define their loss; a top-level ``loss:`` would be silently ignored, so refuse it."""
    if model.loss_spec is not None:
        raise LossError(f"model type '{model.type_name}' defines its own loss ({where}); remove the top-level 'loss:'")


def check_output(field: str, out: tuple, info) -> None:
    if tuple(out) != tuple(info.input_shape):
        raise ShapeError(f"the {field} ends in shape {tuple(out)} but it must reconstruct inputs of shape "
                         f"{tuple(info.input_shape)}", [field])


def batch_rng(x: np.ndarray) -> np.random.Generator:
    """A generator seeded by a batch's content: evaluation draws the same noise for the same batch every
    time, so eval metrics change only with the weights and `netcli eval` repeats exactly."""
    return np.random.default_rng(zlib.crc32(np.ascontiguousarray(x).view(np.uint8)))


@register_model("autoencoder")
class Autoencoder(Model):
    """An encoder to a latent code and a decoder back, trained to reconstruct its input (MSE by default)."""

    class Config(ModelConfig):
        type: Literal["autoencoder"] = "autoencoder"
        encoder: list["LayerSpec"] = Field(min_length=1, description="input -> latent code")  # noqa: F821
        decoder: list["LayerSpec"] = Field(  # noqa: F821
            min_length=1, description="latent code -> reconstruction, in the input's shape (logits for bce)")
        reconstruction: Literal["bce", "mse"] = Field(
            "bce", description="bce: decoder outputs are logits of pixels in [0, 1]; mse: outputs are pixels")

    capabilities = frozenset({"reconstruct"})

    @classmethod
    def grad_cases(cls):
        mlp = {"encoder": [{"type": "dense", "units": 6}, "tanh", {"type": "dense", "units": 3}],
               "decoder": [{"type": "dense", "units": 6}, "tanh", {"type": "dense", "units": 10}]}
        return [ModelCase({**mlp, "reconstruction": "bce"}, (10,)), ModelCase({**mlp, "reconstruction": "mse"}, (10,))]

    def build(self, info):
        own_loss_only(self, "model.reconstruction")
        self.encoder = Sequential(Sequential.Config(layers=self.config.encoder))
        self.decoder = Sequential(Sequential.Config(layers=self.config.decoder))
        latent = self.setup_net("encoder", self.encoder, info.input_shape)
        check_output("decoder", self.setup_net("decoder", self.decoder, latent, input_grad=True), info)
        self.loss = make_loss("binary_cross_entropy" if self.config.reconstruction == "bce" else "mse")

    def networks(self):
        return {"encoder": self.encoder, "decoder": self.decoder}

    def pixels(self, out: np.ndarray) -> np.ndarray:
        """Decoder output -> pixel intensities."""
        from scipy import special  # imported when needed: it is slow to import

        return special.expit(out) if self.config.reconstruction == "bce" else out

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        z = self.encoder.forward(x, training=False)
        return self.pixels(self.decoder.forward(z, training=False))

    def _step(self, x, training):
        out = self.decoder.forward(self.encoder.forward(x, training), training)
        loss = self.loss.forward(out, x)
        return out, {"loss": loss, "recon_mse": float(np.mean((self.pixels(out) - x) ** 2))}

    def train_batch(self, x, y):
        _, metrics = self._step(x, training=True)
        self.encoder.backward(self.decoder.backward(self.loss.backward()))
        return metrics

    def eval_batch(self, x, y):
        return self._step(x, training=False)[1]
