"""The typed side inputs of one batch, passed explicitly down a network's forward pass.

    ctx = Context(t=t)                           # made per batch by whoever has the data (the DDPM model)
    y = net.forward(x, training, ctx)            # containers hand it to every child that reads it

A layer that reads or writes it sets ``uses_context = True`` and takes
``forward(self, x, training, ctx)``; other layers keep ``forward(x, training)``
(containers call each child the way it declares). Nothing is differentiated
through it. Each field has one writer and is checked in one place:

- ``t`` (N,) integer diffusion timesteps: written by the model (ddpm) when it
  makes the context; read with ``timesteps(n, who)``.
- the key padding mask (N, L) bool, True = padding: written once, by the
  caller (``Context(key_padding_mask=...)``) or by an ``embedding`` with a
  ``padding_idx`` (``set_padding``); read with ``padding(N, T, who)``.
- ``prefix``: tokens prepended after the mask was written (``class_token``
  adds 1); ``padding`` puts as many unpadded columns in front, so the mask
  still lines up with the sequence.

A mask that does not fit the sequence it is read for is an error naming the
reader, never silently dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Context:
    t: np.ndarray | None = None
    key_padding_mask: np.ndarray | None = None
    prefix: int = 0

    def set_padding(self, mask: np.ndarray, who: str) -> None:
        if self.key_padding_mask is not None:
            raise ValueError(f"{who}: the batch already has a key padding mask (one writer per batch)")
        self.key_padding_mask, self.prefix = np.asarray(mask, dtype=bool), 0

    def padding(self, N: int, T: int, who: str) -> np.ndarray | None:
        """The (N, T) padding mask for a sequence of T tokens (prepended tokens unpadded), or None if there is none."""
        pad = self.key_padding_mask
        if pad is None:
            return None
        if pad.ndim != 2 or pad.shape[0] != N or pad.shape[1] + self.prefix != T:
            raise ValueError(f"{who}: key_padding_mask has shape {pad.shape}"
                             + (f" (+{self.prefix} prepended tokens)" if self.prefix else "")
                             + f", the sequence is ({N}, {T})")
        if self.prefix:
            pad = np.concatenate([np.zeros((N, self.prefix), dtype=bool), pad], axis=1)
        return pad

    def timesteps(self, n: int, who: str) -> np.ndarray:
        if self.t is None:
            raise ValueError(f"{who} needs the diffusion timesteps of its batch (use it in a ddpm model)")
        if np.shape(self.t) != (n,):
            raise ValueError(f"{who}: the context holds timesteps of shape {np.shape(self.t)} for a batch of {n}")
        return self.t
