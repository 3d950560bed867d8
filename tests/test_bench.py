"""`netcli bench`: a row per layer with positive times, consistent FLOPs and memory totals (no timing thresholds)."""
import numpy as np
import pytest
from typer.testing import CliRunner

from netcli.app.bench import bench_config
from netcli.cli import app

CONFIG = """\
name: tiny_bench
seed: 0
data: {dataset: npz, path: train.npz, batch_size: 8, val_fraction: 0.25}
model:
  type: classifier
  layers:
    - {type: conv2d, filters: 2, kernel: 3, padding: 1}
    - relu
    - {type: maxpool2d, size: 2}
    - flatten
    - {type: dense, units: 3}
optimizer: {type: adam, lr: 0.01}
"""
LAYERS = [("net.0", "conv2d"), ("net.1", "relu"), ("net.2", "maxpool2d"), ("net.3", "flatten"), ("net.4", "dense")]


@pytest.fixture
def config(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train.npz", x=rng.normal(size=(40, 1, 4, 4)).astype(np.float32), y=rng.integers(0, 3, 40))
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG)
    return path


def cells(table):
    """The table's rows as lists of cell strings."""
    return [list(row) for row in zip(*(col._cells for col in table.columns))]


def test_table_has_a_row_per_layer_with_positive_times_and_the_model_flops(config):
    table = bench_config(config, [], repeats=3)
    rows = cells(table)
    head = [c.header for c in table.columns]
    assert head[:5] == ["layer", "type", "forward ms", "backward ms", "FLOPs"]
    assert [(r[0], r[1].strip()) for r in rows[:-1]] == LAYERS
    for r in rows:
        assert float(r[2]) > 0 and float(r[3]) > 0, r
    # conv: 2 filters x 16 positions x (1 channel x 9) multiply-adds x 2, per sample; dense: 2 x 8 x 3
    conv, dense = 2 * 16 * 9 * 2, 2 * 8 * 3
    assert rows[0][4] == f"{conv * 8:,}" and rows[4][4] == f"{dense * 8:,}"
    assert rows[-1][0] == "total" and rows[-1][4] == f"{(conv + dense) * 8:,}"
    # params: conv 2*9 + 2, dense 8*3 + 3 float32s
    assert rows[0][7] == f"{(2 * 9 + 2) * 4} B" and rows[-1][7] == f"{(20 + 27) * 4} B"
    # the conv's output (8, 2, 4, 4) float32 is among what its forward holds
    assert float(rows[0][8].split()[0]) * {"B": 1, "KiB": 1024}[rows[0][8].split()[1]] >= 8 * 2 * 16 * 4


def test_overrides_change_the_batch(config):
    table = bench_config(config, ["data.batch_size=4"], repeats=2)
    assert "batch 4" in table.title
    assert cells(table)[-1][4] == f"{(2 * 16 * 9 * 2 + 2 * 8 * 3) * 4:,}"


def test_cli_bench_prints_the_table(config):
    result = CliRunner().invoke(app, ["bench", str(config), "--repeats", "2"])
    assert result.exit_code == 0, result.output
    for path, _ in LAYERS:  # (the test console is narrow: longer cells wrap)
        assert path in result.output
    assert "total" in result.output and "train step" in result.output


def test_layers_are_left_unwrapped(config):
    from netcli.app.bench import bench_model
    from netcli.train import prepare_experiment

    cfg, exp = prepare_experiment(config)
    x, y = exp.splits.train_x[:8], exp.splits.train_y[:8]
    bench_model(exp.model, exp.optimizers, 0.01, x, y, repeats=2)
    for layer in exp.model.net.layers:
        assert "forward" not in vars(layer) and "backward" not in vars(layer)
