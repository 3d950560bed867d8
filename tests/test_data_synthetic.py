"""Synthetic sequence sets: sine forecasting windows and digit reverse/sort tasks."""
import numpy as np
import pytest

from netcli.data import load_data, parse_data_config
from netcli.data.synthetic import sine_series, unique_sequences, windows


def load(seed, **data):
    return load_data(parse_data_config(data), seed)


def rows(*arrays):
    return {r.tobytes() for a in arrays for r in a}


def test_single_sine_without_noise_obeys_the_sine_recurrence(rng):
    s = sine_series(rng, count=3, length=50, components=1, freq=(0.02, 0.2), noise=0.0)
    # sin(w(t+1)+p) + sin(w(t-1)+p) = 2 cos(w) sin(wt+p): the frequency is the same at every step
    ratio = (s[:, 2:] + s[:, :-2]) / s[:, 1:-1]
    assert np.allclose(ratio, ratio[:, :1], atol=1e-6)
    freq = np.arccos(ratio[:, 0] / 2) / (2 * np.pi)
    assert np.all((freq >= 0.02) & (freq <= 0.2))
    assert np.abs(s).max() <= 1.0


def test_windows_pair_inputs_with_the_next_values():
    series = np.arange(20.0).reshape(2, 10)
    x, y = windows(series, seq_len=4, horizon=2)
    assert x.shape == (10, 4, 1) and y.shape == (10, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, :, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(y[0], [4, 5])
    np.testing.assert_array_equal(x[5, :, 0], [10, 11, 12, 13])  # the second series starts afresh
    np.testing.assert_array_equal(y[4], [8, 9])


def test_sine_dataset_deterministic_shapes_and_held_out_series():
    cfg = dict(dataset="sine", seq_len=16, horizon=3, series=4, test_series=2, length=40)
    a, b, c = load(0, **cfg), load(0, **cfg), load(1, **cfg)
    for name in ("train_x", "train_y", "val_x", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(a.train_x[:5], c.train_x[:5])
    n = 4 * (40 - 16 - 3 + 1)
    assert len(a.train_x) + len(a.val_x) == n and len(a.test_x) == 2 * (40 - 16 - 3 + 1)
    assert a.train_x.shape[1:] == (16, 1) and a.train_y.shape[1:] == (3,) and a.task == "regression"
    assert a.input_shape == (16, 1) and a.target_shape == (3,) and a.num_classes is None
    assert not rows(a.test_x) & rows(a.train_x, a.val_x)
    assert load(0, dataset="sine", test_series=0).test_x is None


@pytest.mark.parametrize("name, target", [("reverse_digits", lambda x: x[:, ::-1]),
                                          ("sort_digits", lambda x: np.sort(x, axis=1))])
def test_digit_tasks(name, target):
    s = load(5, dataset=name, seq_len=6, train_size=500, test_size=100)
    assert s.train_x.shape == (450, 6) and s.val_x.shape == (50, 6) and s.test_x.shape == (100, 6)
    assert s.train_x.dtype == np.int64 and s.train_y.dtype == np.int64
    assert s.num_classes == 10 and s.task == "classification" and s.target_shape == (6,)
    for x, y in ((s.train_x, s.train_y), (s.val_x, s.val_y), (s.test_x, s.test_y)):
        np.testing.assert_array_equal(y, target(x))
        assert x.min() >= 0 and x.max() <= 9
    assert not rows(s.test_x) & rows(s.train_x, s.val_x)
    assert len(rows(s.train_x, s.val_x, s.test_x)) == 600
    again = load(5, dataset=name, seq_len=6, train_size=500, test_size=100)
    np.testing.assert_array_equal(again.train_x, s.train_x)
    assert not np.array_equal(load(6, dataset=name, seq_len=6, train_size=500, test_size=100).train_x, s.train_x)


def test_unique_sequences_when_collisions_are_common(rng):
    seqs = unique_sequences(rng, 40, seq_len=2)  # 40 of only 100 possible sequences
    assert seqs.shape == (40, 2) and len(rows(seqs)) == 40
