"""A new model type is one file in netcli/models/ that nothing else names, and the trainer is generic.

The test copies the package, drops ``models/twin.py`` into the copy and drives
the real CLI in a child process on it: train (with two named optimizers that
take alternating steps, as a GAN's would), resume, eval, summary, and sample
(refused with the capability it lacks). Nothing outside the new file mentions
``twin``. (The layering of the imports: tests/test_layering.py.)
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import netcli
import netcli.models  # noqa: F401  (registers every model type)
from netcli.models.base import CAPABILITIES
from netcli.registry import MODELS
from netcli.runs import load_checkpoint

PACKAGE = Path(netcli.__file__).resolve().parent

TWIN = '''"""Two regressors on the same input, each with its own optimizer, stepped one after the other."""
from typing import Literal

from pydantic import Field

from ..layers.container import Sequential
from ..losses import make_loss
from .base import Model, ModelCase, ModelConfig, register_model


@register_model("twin")
class Twin(Model):
    class Config(ModelConfig):
        type: Literal["twin"] = "twin"
        layers: list["LayerSpec"] = Field(min_length=1, description="each twin's network")  # noqa: F821

    capabilities = frozenset({"predict"})

    def build(self, info):
        self.left = Sequential(Sequential.Config(layers=self.config.layers))
        self.right = Sequential(Sequential.Config(layers=self.config.layers))
        self.setup_net("layers", self.left, info.input_shape)
        self.setup_net("layers", self.right, info.input_shape)
        self.loss = make_loss("mse")

    def networks(self):
        return {"left": self.left, "right": self.right}

    def optimizers(self):
        return {"left": ("left",), "right": ("right",)}

    def half(self, net, x, y, training):
        return self.loss.forward(net.forward(x, training), y.reshape(len(y), -1).astype(x.dtype))

    def train_step(self, x, y, step):
        a = self.half(self.left, x, y, True)
        self.left.backward(self.loss.backward())
        step("left", a)
        b = self.half(self.right, x, y, True)
        self.right.backward(self.loss.backward())
        step("right", b)
        return {"loss": a + b, "left": a, "right": b}

    def train_batch(self, x, y):
        metrics = self.train_step(x, y, lambda name, loss: None)
        return metrics

    def eval_batch(self, x, y):
        a, b = self.half(self.left, x, y, False), self.half(self.right, x, y, False)
        return {"loss": a + b, "left": a, "right": b}

    def predict(self, x):
        return self.left.forward(x, training=False)

    @classmethod
    def grad_cases(cls):
        return [ModelCase({"layers": [{"type": "dense", "units": 3}, "tanh", {"type": "dense", "units": 1}]},
                          (4,), "values", (1,))]
'''

CONFIG = """\
name: twins
seed: 1
data: {dataset: npz, path: train.npz, test_path: test.npz, batch_size: 8, val_fraction: 0.25}
model:
  type: twin
  layers: [{type: dense, units: 6}, tanh, {type: dense, units: 1}]
optimizer: {type: adam, lr: 0.01}
train: {epochs: 2}
"""


def cli(root: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", "from netcli.cli import main; main()", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_model_type_is_one_file_that_nothing_else_names(tmp_path):
    root = tmp_path / "src"
    shutil.copytree(PACKAGE, root / "netcli", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "netcli" / "models" / "twin.py").write_text(TWIN)
    others = [p for p in (root / "netcli").rglob("*.py") if p.name != "twin.py" and "twin" in p.read_text()]
    assert not others, f"already named elsewhere: {others}"
    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train.npz", 64), ("test.npz", 16)):
        x = rng.standard_normal((n, 4)).astype(np.float32)
        np.savez(work / name, x=x, y=x.sum(1, keepdims=True))
    (work / "twins.yaml").write_text(CONFIG)

    r = cli(root, work, "train", "twins.yaml", "--quiet")
    assert r.returncode == 0, r.stderr + r.stdout
    run = next((work / "runs" / "twins").iterdir())
    arrays, _ = load_checkpoint(run / "checkpoints" / "last.npz")
    assert int(arrays["optim/left/step"]) == int(arrays["optim/right/step"]) == 2 * 6  # 48 samples / 8, 2 epochs
    assert {k.split(".")[1] for k in arrays if k.startswith("optim/left/m.")} == {"left"}
    assert {k.split(".")[1] for k in arrays if k.startswith("optim/right/m.")} == {"right"}

    r = cli(root, work, "train", "--resume", run, "--set", "train.epochs=3", "--allow-config-change", "--quiet")
    assert r.returncode == 0, r.stderr + r.stdout
    assert int(load_checkpoint(run / "checkpoints" / "last.npz")[0]["optim/right/step"]) == 3 * 6

    r = cli(root, work, "eval", run)
    assert r.returncode == 0 and "left" in r.stdout and "right" in r.stdout, r.stderr + r.stdout
    r = cli(root, work, "summary", "twins.yaml")
    assert r.returncode == 0 and "left" in r.stdout and "right" in r.stdout, r.stderr + r.stdout
    r = cli(root, work, "sample", run)
    assert r.returncode == 2 and "needs a model that can sample" in r.stderr + r.stdout, r.stderr + r.stdout
    assert "a twin model cannot" in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_every_model_type_has_the_methods_of_its_capabilities():
    for name, cls in MODELS.items():
        assert cls.capabilities <= CAPABILITIES.keys(), name
        for cap in cls.capabilities:
            for method in CAPABILITIES[cap][1].split("; "):
                assert callable(getattr(cls, method.split("(")[0], None)), f"{name}: {cap} promises {method}"
