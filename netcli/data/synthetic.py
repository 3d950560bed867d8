"""Synthetic sequence data, generated from the run's seed: sine-wave forecasting and digit-sequence tasks."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field, model_validator

from .base import DataConfig, Dataset, Progress, Splits, make_splits, register_dataset, seeded_rng


# -- sine -------------------------------------------------------------------
def sine_series(rng: np.random.Generator, count: int, length: int, components: int,
                freq: tuple[float, float], noise: float) -> np.ndarray:
    """(count, length) float64 series, each a sum of ``components`` sines plus Gaussian noise."""
    f = rng.uniform(*freq, size=(count, components, 1))                 # cycles per step
    phase = rng.uniform(0, 2 * np.pi, size=(count, components, 1))
    amp = rng.uniform(0.5, 1.0, size=(count, components, 1)) / components
    t = np.arange(length)                                               # (length,)
    clean = (amp * np.sin(2 * np.pi * f * t + phase)).sum(axis=1)       # (count, length)
    return clean + noise * rng.standard_normal((count, length))


def windows(series: np.ndarray, seq_len: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``seq_len`` steps (N, seq_len, 1) and the ``horizon`` values after it (N, horizon)."""
    w = sliding_window_view(series, seq_len + horizon, axis=1)          # (count, L - seq_len - horizon + 1, T + k)
    w = w.reshape(-1, seq_len + horizon).astype(np.float32)
    return w[:, :seq_len, None], w[:, seq_len:]


@register_dataset("sine")
class SineDataset(Dataset):
    """Forecasting: given ``seq_len`` values of a noisy sum of sines, predict the next ``horizon`` values.

    Training windows come from ``series`` series, test windows from ``test_series`` other ones.
    """

    class Config(DataConfig):
        dataset: Literal["sine"] = Field("sine", description="Noisy sums of sines; predict the next values.")
        seq_len: int = Field(32, gt=0, description="Input window length T; x is (N, T, 1).")
        horizon: int = Field(1, gt=0, description="How many next values to predict; y is (N, horizon).")
        series: int = Field(64, gt=0, description="Number of training series.")
        test_series: int = Field(16, ge=0, description="Number of held-out test series (0: no test split).")
        length: int = Field(256, gt=1, description="Steps per series.")
        components: int = Field(3, gt=0, description="Sines summed per series.")
        min_freq: float = Field(0.01, gt=0, lt=0.5, description="Lowest frequency, in cycles per step.")
        max_freq: float = Field(0.1, gt=0, lt=0.5, description="Highest frequency, in cycles per step.")
        noise: float = Field(0.05, ge=0, description="Standard deviation of the added Gaussian noise.")

        @model_validator(mode="after")
        def _fits(self):
            if self.seq_len + self.horizon > self.length:
                raise ValueError(f"seq_len + horizon ({self.seq_len + self.horizon}) exceeds length ({self.length})")
            if self.min_freq > self.max_freq:
                raise ValueError("min_freq must not exceed max_freq")
            return self

    def load(self, seed: int, *, progress: Progress = None, base_dir: Path | None = None) -> Splits:
        c = self.config

        def make(count: int, stream: str) -> tuple[np.ndarray, np.ndarray]:
            series = sine_series(seeded_rng(seed, stream), count, c.length, c.components,
                                 (c.min_freq, c.max_freq), c.noise)
            return windows(series, c.seq_len, c.horizon)

        test = make(c.test_series, "sine/test") if c.test_series else None
        return make_splits(c, seed, make(c.series, "sine/train"), test, task="regression", num_classes=None,
                           description={"kind": "series"})


# -- digit sequences --------------------------------------------------------
def unique_sequences(rng: np.random.Generator, count: int, seq_len: int) -> np.ndarray:
    """(count, seq_len) int64 digit sequences, no two alike, in the order drawn."""
    seqs = np.empty((0, seq_len), np.int64)
    while len(seqs) < count:
        draw = np.concatenate([seqs, rng.integers(0, 10, size=(count - len(seqs), seq_len))])
        _, first = np.unique(draw, axis=0, return_index=True)
        seqs = draw[np.sort(first)]
    return seqs


class DigitsDataset(Dataset):
    """Sequence-to-sequence on digits 0-9: a label for every position (for a transformer encoder).

    x (N, T) int64 tokens, y (N, T) int64 targets, 10 classes. Train and test sequences are disjoint.
    """

    class Config(DataConfig):
        seq_len: int = Field(8, ge=2, le=64, description="Tokens per sequence T.")
        train_size: int = Field(10000, gt=0, description="Number of training sequences (before the val split).")
        test_size: int = Field(1000, ge=0, description="Number of test sequences, none of them in the training set.")

        @model_validator(mode="after")
        def _enough_sequences(self):
            if self.train_size + self.test_size > 10 ** self.seq_len // 2:
                raise ValueError(f"{self.train_size + self.test_size} distinct sequences is too many for "
                                 f"seq_len {self.seq_len}; lower the sizes or raise seq_len")
            return self

    @staticmethod
    def target(x: np.ndarray) -> np.ndarray:
        """(N, T) targets of the (N, T) token sequences ``x``."""
        raise NotImplementedError

    def load(self, seed: int, *, progress: Progress = None, base_dir: Path | None = None) -> Splits:
        c = self.config
        x = unique_sequences(seeded_rng(seed, self.type_name), c.train_size + c.test_size, c.seq_len)
        y = self.target(x)
        train, test = (x[:c.train_size], y[:c.train_size]), (x[c.train_size:], y[c.train_size:])
        return make_splits(c, seed, train, test if c.test_size else None, task="classification", num_classes=10,
                           description={"kind": "tokens", "vocab": 10})


@register_dataset("reverse_digits")
class ReverseDigits(DigitsDataset):
    class Config(DigitsDataset.Config):
        dataset: Literal["reverse_digits"] = Field("reverse_digits", description="Target: the sequence reversed.")

    @staticmethod
    def target(x: np.ndarray) -> np.ndarray:
        return x[:, ::-1].copy()


@register_dataset("sort_digits")
class SortDigits(DigitsDataset):
    class Config(DigitsDataset.Config):
        dataset: Literal["sort_digits"] = Field("sort_digits", description="Target: the sequence sorted ascending.")

    @staticmethod
    def target(x: np.ndarray) -> np.ndarray:
        return np.sort(x, axis=1)
