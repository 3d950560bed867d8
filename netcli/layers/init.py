"""Weight initialisers: Glorot (Xavier) and He (Kaiming), uniform and normal.

fan_in/fan_out of a weight of shape (in, out) or (out, in, *kernel) follow
PyTorch's convention for conv weights (receptive field times channels).
"""
from __future__ import annotations

import numpy as np

from .. import backend as B

INITS = ("auto", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal", "zeros")
RELU_LIKE = {"relu", "leaky_relu", "gelu"}  # activations that want He init under init: auto


def resolve(init: str, next_layer: str | None) -> str:
    """``auto`` picks He init before a ReLU-like activation and Glorot otherwise."""
    if init != "auto":
        return init
    return "he_normal" if next_layer in RELU_LIKE else "glorot_uniform"


def initialise(init: str, shape: tuple[int, ...], fan_in: int, fan_out: int,
               rng: np.random.Generator) -> np.ndarray:
    # A weight larger than memory would be drawn page by page until the kernel kills the process:
    # refuse it first (the draw in float64, the weight and its gradient).
    need = int(np.prod(shape)) * (8 + 2 * np.dtype(B.float_dtype()).itemsize)
    free = B.available_memory()
    if free is not None and need > free:
        raise MemoryError(f"weights of shape {tuple(shape)} need {B.format_bytes(need)}; "
                          f"{B.format_bytes(free)} of memory is available")
    if init == "zeros":
        w = np.zeros(shape)
    elif init == "glorot_uniform":
        a = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-a, a, shape)
    elif init == "glorot_normal":
        w = rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))
    elif init == "he_uniform":
        a = np.sqrt(6.0 / fan_in)
        w = rng.uniform(-a, a, shape)
    elif init == "he_normal":
        w = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif init == "lecun_normal":
        w = rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
    else:
        raise ValueError(f"unknown init '{init}'; valid: {', '.join(INITS)}")
    return B.asarray(w)
