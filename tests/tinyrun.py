"""A tiny classification config on tiny npz data, shared by the CLI-level tests."""
import numpy as np
from typer.testing import CliRunner

from netcli.cli import app

runner = CliRunner()

TINY = """\
name: tiny
seed: 3
data:
  dataset: npz
  path: train.npz
  test_path: test.npz
  batch_size: 8
  val_fraction: 0.2
model:
  type: classifier
  layers:
    - {type: conv2d, filters: 2, kernel: 3, padding: 1}
    - relu
    - flatten
    - {type: dense, units: 2}
optimizer: {type: adam, lr: 0.01}
train:
  epochs: 2
"""


def write_tiny_data(tmp_path):
    """Write train.npz (48) and test.npz (16): two separable classes of 1x4x4 images."""
    rng = np.random.default_rng(0)
    for name, n in (("train.npz", 48), ("test.npz", 16)):
        y = rng.integers(0, 2, n)
        x = rng.normal(size=(n, 1, 4, 4)).astype(np.float32) + y[:, None, None, None]
        np.savez(tmp_path / name, x=x, y=y)


def make_tiny(tmp_path):
    """Write the tiny data and tiny.yaml."""
    write_tiny_data(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])
