"""User plugins: config `plugins:` and `netcli --plugin`, recorded with their hash, resume refused when they change,
one-line import errors; `netcli gradcheck` on plugins and built-ins.

Each test runs netcli in a subprocess, as a user would: a plugin registers components for the whole
process, and the other tests' registries stay netcli's own.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tinyrun import TINY, write_tiny_data

ROOT = Path(__file__).resolve().parent.parent
SWISH = ROOT / "examples" / "swish.py"


def netcli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "netcli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def swish_run(tmp_path):
    """tiny data, swish.py beside a config that uses it (relative path), and a config without the plugins line."""
    write_tiny_data(tmp_path)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "swish.py").write_text(SWISH.read_text())
    text = TINY.replace("    - relu\n", "    - {type: swish, beta: 2.0}\n")
    (tmp_path / "bare.yaml").write_text(text)
    (tmp_path / "tiny.yaml").write_text(text.replace("seed: 3\n", "seed: 3\nplugins: [plugins/swish.py]\n"))
    return tmp_path


def test_a_config_plugin_trains_and_the_run_records_path_and_hash(swish_run):
    r = netcli("train", "tiny.yaml", "-q", "--set", "train.max_steps=2", "--set", "train.checkpoint_every=1",
               cwd=swish_run)
    assert r.returncode == 0, r.stderr
    run = next((swish_run / "runs" / "tiny").iterdir())
    recorded = yaml.safe_load((run / "config.yaml").read_text())["plugins"]
    import hashlib

    plugin = swish_run / "plugins" / "swish.py"
    assert recorded == [{"path": str(plugin), "sha256": hashlib.sha256(plugin.read_bytes()).hexdigest()}]
    assert recorded[0]["sha256"] != "" and yaml.safe_load((run / "config.yaml").read_text())["model"]["layers"][1] \
        == {"type": "swish", "beta": 2.0}

    plugin.write_text(plugin.read_text() + "# edited\n")
    r = netcli("train", "--resume", run, "-q", "--set", "train.max_steps=3", cwd=swish_run)
    assert r.returncode == 2 and "plugins.0.sha256" in r.stderr and "--allow-config-change" in r.stderr
    assert "changed since this config recorded it" in r.stderr and "Traceback" not in r.stderr
    r = netcli("train", "--resume", run, "-q", "--set", "train.max_steps=3", "--allow-config-change", cwd=swish_run)
    assert r.returncode == 0, r.stderr
    assert "plugins.0.sha256" in (run / "config_changes.log").read_text()

    plugin.unlink()
    r = netcli("train", "--resume", run, "-q", "--set", "train.max_steps=4", "--allow-config-change", cwd=swish_run)
    assert r.returncode == 2 and f"plugin file {plugin} not found" in r.stderr
    assert r.stderr.count("\n") == 1


def test_command_line_plugin_is_recorded_and_shown(swish_run):
    r = netcli("validate", "bare.yaml", cwd=swish_run)
    assert r.returncode == 2 and "unknown layer 'swish'" in r.stderr
    r = netcli("--plugin", "plugins/swish.py", "config", "bare.yaml", cwd=swish_run)
    assert r.returncode == 0, r.stderr
    assert f"- path: {swish_run / 'plugins' / 'swish.py'}" in r.stdout and "# --plugin" in r.stdout
    assert "beta: 2.0" in r.stdout
    r = netcli("--plugin", "plugins/swish.py", "train", "bare.yaml", "-q", "--set", "train.max_steps=1", cwd=swish_run)
    assert r.returncode == 0, r.stderr
    run = next((swish_run / "runs" / "tiny").iterdir())
    assert yaml.safe_load((run / "config.yaml").read_text())["plugins"][0]["path"].endswith("swish.py")
    # the run's own config brings its plugin back: eval needs no --plugin
    assert netcli("eval", run, cwd=swish_run).returncode == 0


def test_plugin_components_of_every_kind_appear_in_schema_and_reference(tmp_path):
    (tmp_path / "more.py").write_text('''
from typing import Literal
from pydantic import Field
from netcli.losses import Loss, LossCase, LossConfig, register_loss
from netcli.schedules import Schedule, ScheduleConfig, register_schedule


@register_loss("squared_log")
class SquaredLog(Loss):
    """mean((log1p|pred| - log1p|target|)^2)."""

    class Config(LossConfig):
        type: Literal["squared_log"] = "squared_log"

    def forward(self, pred, target):
        import numpy as np
        self.pred, self.target = pred, target
        self.d = np.log1p(np.abs(pred)) - np.log1p(np.abs(target))
        return float(np.mean(self.d ** 2))

    def backward(self):
        import numpy as np
        return 2 * self.d * np.sign(self.pred) / (1 + np.abs(self.pred)) / self.d.size

    @classmethod
    def grad_cases(cls):
        return [LossCase({}, (4, 3), "real")]


@register_schedule("halving")
class Halving(Schedule):
    """base_lr / 2 ** (step // every)."""

    class Config(ScheduleConfig):
        type: Literal["halving"] = "halving"
        every: int = Field(10, gt=0, description="steps between halvings")

    def lr_at(self, step):
        return self.base_lr / 2 ** (step // self.config.every)
''')
    r = netcli("--plugin", "more.py", "schema", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert '"squared_log"' in r.stdout and '"halving"' in r.stdout
    r = netcli("--plugin", "more.py", "list", "schedules", "halving", cwd=tmp_path)
    assert r.returncode == 0 and "steps between halvings" in r.stdout and "more.py" in r.stdout
    r = netcli("gradcheck", "more.py", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "loss squared_log" in r.stdout and "1 of 1 cases passed" in r.stdout


BROKEN = {
    "syntax": ("x = 1\ndef f(:\n    pass\n", ":2: plugin does not parse"),
    "runtime": ("import numpy\n\nundefined_name + 1\n", ":3: plugin failed to import: NameError"),
    "registration": ("from typing import Literal\nfrom netcli.layers import Layer, LayerConfig, register_layer\n\n"
                     "@register_layer('mine')\nclass Mine(Layer):\n    class Config(LayerConfig):\n"
                     "        type: Literal['other'] = 'other'\n",
                     ":4: plugin failed to import: TypeError: Mine.Config must declare type: Literal['mine']"),
    "twice": ("from typing import Literal\nfrom netcli.layers import Layer, LayerConfig, register_layer\n\n"
              "@register_layer('relu')\nclass Mine(Layer):\n    class Config(LayerConfig):\n"
              "        type: Literal['relu'] = 'relu'\n", ":4: plugin failed to import: ValueError: layer 'relu'"),
}


@pytest.mark.parametrize("what", BROKEN)
def test_a_plugin_that_fails_to_import_is_one_line_with_file_and_line(tmp_path, what):
    source, message = BROKEN[what]
    (tmp_path / "bad.py").write_text(source)
    (tmp_path / "c.yaml").write_text(TINY.replace("seed: 3\n", "seed: 3\nplugins: [bad.py]\n"))
    r = netcli("validate", "c.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert f"{tmp_path / 'bad.py'}{message}" in r.stderr, r.stderr


def test_missing_plugin_file_and_module_name_the_config_line(tmp_path):
    (tmp_path / "c.yaml").write_text(TINY.replace("seed: 3\n", "seed: 3\nplugins: [nothere.py, no_such_module]\n"))
    r = netcli("validate", "c.yaml", cwd=tmp_path)
    assert r.returncode == 2 and f"c.yaml:3: plugins.0: plugin file {tmp_path / 'nothere.py'} not found" in r.stderr
    (tmp_path / "c.yaml").write_text(TINY.replace("seed: 3\n", "seed: 3\nplugins: [no_such_module]\n"))
    r = netcli("validate", "c.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "plugins.0: no plugin module 'no_such_module'" in r.stderr


def test_gradcheck_fails_a_wrong_backward_and_a_layer_without_cases(tmp_path):
    wrong = SWISH.read_text().replace("self.x * self.config.beta * self.s * (1.0 - self.s)", "self.x * self.s")
    assert wrong != SWISH.read_text()
    (tmp_path / "wrong.py").write_text(wrong)
    r = netcli("gradcheck", "wrong.py", cwd=tmp_path)
    assert r.returncode == 1 and "FAIL" in r.stdout and "0 of 2 cases passed" in r.stdout
    (tmp_path / "nocases.py").write_text(SWISH.read_text().split("    @classmethod")[0])
    r = netcli("gradcheck", "nocases.py", cwd=tmp_path)
    assert r.returncode == 1 and "lists no gradient-check cases" in r.stdout


def test_gradcheck_the_example_plugin_and_built_ins(tmp_path):
    r = netcli("gradcheck", SWISH, "dense", "mse", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    for text in ("layer swish: defaults on (7,)", "layer dense: {'units': 4} on (5,)", "d/d param W",
                 "gradients accumulate", "input untouched", "loss mse", "PASS"):
        assert text in r.stdout
    assert "FAIL" not in r.stdout
    r = netcli("gradcheck", "dence", cwd=tmp_path)
    assert r.returncode == 2 and "did you mean 'dense'" in r.stderr


def test_the_example_plugin_config_trains_on_mnist(tmp_path):
    r = netcli("train", ROOT / "examples" / "mnist_swish.yaml", "-q", "--runs-dir", tmp_path,
               "--set", "data.limit=256", "--set", "train.max_steps=3", "--set", "schedule=constant", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "max_steps" in r.stdout
