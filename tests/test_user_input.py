"""What a user types and points at: blamed where it came from, refused early, in one short line.

Paths that fail with OS errors, non-regular files, oversized configs, integers too long for
Python, deeply nested or huge `--set` values; file modes of what a run writes.
"""
import errno
import os
import resource
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_hostile import assert_clean_error
from tinyrun import TINY, invoke

ROOT = Path(__file__).resolve().parents[1]
LONG_INT = "1" * 5000  # past Python's 4,300-digit limit of int(str)


def netcli_process(*args, timeout=60):
    """`python -m netcli ARGS` in a process of its own, killed after ``timeout`` s (a read that blocks) and
    held to 4 GiB of address space (a read of /dev/zero that never ends fails there, not in the machine)."""
    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    return subprocess.run([sys.executable, "-m", "netcli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=limit_memory)


def tiny_config(tiny, text, name="c.yaml"):
    p = tiny / name
    p.write_text(text)
    return p


# -- where a mistake is blamed -------------------------------------------------------------------


@pytest.mark.parametrize("item,fragment", [
    ("optimzer.lr=3e-4", "--set optimzer.lr=3e-4: optimzer: unknown key 'optimzer' (did you mean 'optimizer'?)"),
    ("train.epochs=many", "--set train.epochs=many: Input should be a valid integer"),
    ("data.dataset=mnsit", "--set data.dataset=mnsit: unknown dataset 'mnsit'"),
    ("model.layers.3.unitz=2", "--set model.layers.3.unitz=2: unknown key 'unitz' (did you mean 'units'?)"),
    ("schedule={type: cosine, warmup_steps: 500}", "--set schedule={type: cosine, warmup_steps: 500}: schedule"),
])
def test_a_value_from_the_command_line_is_blamed_on_its_set(tiny, item, fragment):
    r = invoke("validate", tiny / "tiny.yaml", "--set", item)
    assert_clean_error(r, fragment)
    assert "tiny.yaml" not in r.stderr, r.stderr


def test_a_schedule_error_is_blamed_on_the_set_that_caused_it_and_says_what_to_lower(tiny):
    p = tiny_config(tiny, TINY + "schedule: {type: cosine, warmup_steps: 3}\n")
    r = invoke("validate", p, "--set", "schedule.warmup_steps=500")
    assert_clean_error(r, "--set schedule.warmup_steps=500: schedule 'cosine' needs 1 or more steps after its 500",
                       "lower schedule.warmup_steps to 9 or less")
    # the same warmup in the file, with too few steps from the command line: the file's key and line
    r = invoke("validate", p, "--set", "train.max_steps=3")
    assert_clean_error(r, f"{p}:19: schedule.warmup_steps: ", "training has 3 in all; lower schedule.warmup_steps to 2")


def test_an_unknown_name_is_blamed_on_its_own_line(tiny):
    p = tiny_config(tiny, TINY.replace("dataset: npz", "dataset: mnsit"))
    assert_clean_error(invoke("validate", p), f"{p}:4: data.dataset: unknown dataset 'mnsit'")
    p = tiny_config(tiny, TINY.replace("type: adam", "type: adamm"))
    assert_clean_error(invoke("validate", p), f"{p}:16: optimizer.type: unknown optimizer 'adamm'")


def test_a_set_that_replaces_a_section_takes_the_blame_for_all_of_it(tiny):
    r = invoke("validate", tiny / "tiny.yaml", "--set", "optimizer={type: adam, lr: -1}")
    assert_clean_error(r, "--set optimizer={type: adam, lr: -1}: optimizer.lr: Input should be greater than 0")


# -- hostile values ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "set value", "set index", "set key"])
def test_integers_longer_than_python_converts(tiny, where):
    args = ["validate", tiny / "tiny.yaml"]
    if where == "file":
        args[1] = tiny_config(tiny, TINY.replace("seed: 3", f"seed: {LONG_INT}"))
    else:
        args += ["--set", {"set value": f"seed={LONG_INT}", "set index": f"model.layers.{LONG_INT}.units=3",
                           "set key": f"train.{LONG_INT}=3"}[where]]
    r = invoke(*args)
    assert_clean_error(r)
    assert len(r.stderr) < 400, r.stderr
    if where == "file":
        assert f"{args[1]}:2: YAML error: an integer of 5,000 characters is too long" in r.stderr


def test_a_huge_integer_that_python_converts_is_reported_without_its_digits(tiny):
    r = invoke("validate", tiny / "tiny.yaml", "--set", "train.epochs=" + "9" * 4000)
    assert_clean_error(r, "less than or equal to 100000 (got an integer of 4000 digits)")
    assert len(r.stderr) < 400, r.stderr


@pytest.mark.parametrize("value", ["[" * 60_000 + "]" * 60_000, "{a: " * 60_000, "'" + "x" * 200_000])
def test_a_huge_or_deeply_nested_set_value_gets_a_short_message(tiny, value):
    r = invoke("validate", tiny / "tiny.yaml", "--set", "train.epochs=" + value)
    assert_clean_error(r, "--set train.epochs=")
    assert len(r.stderr) < 400, r.stderr


def test_a_huge_unknown_key_gets_a_short_message(tiny):
    r = invoke("validate", tiny / "tiny.yaml", "--set", "x" * 100_000 + "=1")
    assert_clean_error(r, "unknown key")
    assert len(r.stderr) < 600, r.stderr


# -- paths and files -----------------------------------------------------------------------------


def bad_paths(tmp_path):
    """A symlink loop, a 300-character name, a file used as a folder: (path, what the OS says)."""
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "plain").write_text("x")
    return {"symlink loop": (tmp_path / "loop1", os.strerror(errno.ELOOP)),
            "name too long": (tmp_path / ("n" * 300 + ".yaml"), os.strerror(errno.ENAMETOOLONG)),
            "file as a folder": (tmp_path / "plain" / "x.yaml", os.strerror(errno.ENOTDIR))}


@pytest.mark.parametrize("what", ["symlink loop", "name too long", "file as a folder"])
def test_os_errors_on_a_config_path(tmp_path, what):
    path, reason = bad_paths(tmp_path)[what]
    for command in (["validate", path], ["summary", path], ["train", path, "--runs-dir", tmp_path / "runs"],
                    ["bench", path]):
        assert_clean_error(invoke(*command), f"{path}: {reason}")


@pytest.mark.parametrize("what", ["symlink loop", "name too long", "file as a folder"])
def test_os_errors_on_a_run_path(tiny, what):
    path, reason = bad_paths(tiny)[what]
    for command in (["eval", path], ["sample", path], ["train", "--resume", path],
                    ["train", tiny / "tiny.yaml", "--init-from", path, "--runs-dir", tiny / "runs"]):
        assert_clean_error(invoke(*command), f"{path}", reason)


@pytest.mark.parametrize("kind", ["npz", "csv", "idx"])
@pytest.mark.parametrize("what", ["symlink loop", "name too long", "file as a folder", "char device", "fifo"])
def test_os_errors_and_non_regular_files_as_data_paths(tiny, kind, what):
    if what == "char device":
        path, reason = Path("/dev/zero"), "is a character device, not a regular file"
    elif what == "fifo":
        path, reason = tiny / "fifo", "is a FIFO, not a regular file"
        os.mkfifo(path)
    else:
        path, reason = bad_paths(tiny)[what]
    data = {"npz": f"dataset: npz\n  path: {path}",
            "csv": f"dataset: csv\n  label_column: y\n  path: {path}",
            "idx": f"dataset: idx\n  images: {path}\n  labels: {path}"}[kind]
    text = TINY.replace("dataset: npz\n  path: train.npz\n  test_path: test.npz", data)
    r = netcli_process("validate", tiny_config(tiny, text))  # nothing is read until memory runs out, nothing blocks
    assert r.returncode == 2 and r.stderr.startswith(f"error: {path}: {reason}") and r.stderr.count("\n") == 1, r.stderr


def test_a_relative_data_path_in_a_symlink_loop(tiny):
    # relative paths are made absolute against the config's folder: a loop must reach the reader intact
    bad_paths(tiny)
    text = TINY.replace("path: train.npz", "path: loop1")
    r = invoke("validate", tiny_config(tiny, text))
    assert_clean_error(r, f"{tiny / 'loop1'}: {os.strerror(errno.ELOOP)}")


def test_plugin_sweep_and_init_paths_in_a_symlink_loop(tiny):
    loop, reason = bad_paths(tiny)["symlink loop"]
    (tiny / "l1.py").symlink_to("l2.py")
    (tiny / "l2.py").symlink_to("l1.py")
    assert_clean_error(invoke("--plugin", tiny / "l1.py", "validate", tiny / "tiny.yaml"),
                       f"--plugin {tiny / 'l1.py'}: plugin file {tiny / 'l1.py'}: {reason}")
    p = tiny_config(tiny, "plugins: [l1.py]\n" + TINY)
    assert_clean_error(invoke("validate", p), f"{p}:1: plugins.0: plugin file {tiny / 'l1.py'}: {reason}")
    sweep = tiny_config(tiny, "base: loop1\nobjective: {metric: val_loss, direction: minimize}\n"
                              "space: {optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}}\n", "sw.yaml")
    assert_clean_error(invoke("sweep", sweep, "--sweep-dir", tiny / "sw"), f"{loop}: {reason}")
    assert_clean_error(invoke("sweep", "/dev/zero"), "/dev/zero: is a character device, not a regular file")
    (tiny / "l1.csv").symlink_to("l2.csv")
    (tiny / "l2.csv").symlink_to("l1.csv")
    assert_clean_error(invoke("init", "--model", "mlp", "--data", tiny / "l1.csv", "--target", "y", "-o", tiny / "i.yaml"),
                       f"--data {tiny / 'l1.csv'}: {reason}")


def test_non_regular_and_oversized_configs_are_refused_before_parsing(tmp_path):
    r = netcli_process("validate", "/dev/zero")
    assert r.returncode == 2 and r.stderr == "error: /dev/zero: is a character device, not a regular file\n", r.stderr
    os.mkfifo(tmp_path / "fifo.yaml")
    r = netcli_process("validate", tmp_path / "fifo.yaml")  # opening a FIFO to read it would block
    assert r.returncode == 2 and r.stderr == f"error: {tmp_path / 'fifo.yaml'}: is a FIFO, not a regular file\n"
    assert_clean_error(invoke("validate", tmp_path), "is a directory, not a regular file")
    big = tmp_path / "big.yaml"
    big.write_text("name: big\n" + "x: 1\n" * 1_000_000)  # 5 MB
    t0 = time.time()
    assert_clean_error(invoke("validate", big), f"{big}: 4.8 MiB is too large (at most 256.0 KiB)")
    assert time.time() - t0 < 2


def test_a_csv_with_a_byte_order_mark_reads_like_one_without(tiny):
    rng = np.random.default_rng(0)
    rows = "\n".join(f"{int(a + b > 0)},{a:.3f},{b:.3f}" for a, b in rng.normal(size=(40, 2)))
    (tiny / "bom.csv").write_text("y,a,b\n" + rows + "\n", encoding="utf-8-sig")  # the mark sticks to 'y'
    assert (tiny / "bom.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    text = TINY.replace("dataset: npz\n  path: train.npz\n  test_path: test.npz",
                        "dataset: csv\n  path: bom.csv\n  label_column: y").replace(
        "conv2d, filters: 2, kernel: 3, padding: 1", "dense, units: 4").replace("    - flatten\n", "")
    r = invoke("validate", tiny_config(tiny, text))
    assert r.exit_code == 0, r.output
    r = invoke("init", "--model", "mlp", "--data", tiny / "bom.csv", "--target", "y", "-o", tiny / "bom.yaml")
    assert r.exit_code == 0, r.output
    assert invoke("validate", tiny / "bom.yaml").exit_code == 0


# -- what a run writes ---------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_run_files_get_the_modes_the_umask_gives(tiny, umask):
    old = os.umask(umask)
    try:
        assert invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet").exit_code == 0
        assert invoke("eval", tiny / "runs" / "tiny").exit_code == 0
    finally:
        os.umask(old)
    files = [p for p in (tiny / "runs").rglob("*") if p.is_file() and p.name != ".lock"]
    assert {p.name for p in files} >= {"config.yaml", "summary.json", "eval.json", "last.npz", "metrics.jsonl"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, (p, oct(p.stat().st_mode))


# -- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_while_the_modules_import_is_one_line_and_exit_130():
    # KeyboardInterrupt where a real Ctrl-C lands in the first ~0.35 s: inside `import numpy` below netcli.cli
    code = ("import builtins, sys\n"
            "real = builtins.__import__\n"
            "def slow(name, *a, **k):\n"
            "    if name == 'numpy':\n"
            "        raise KeyboardInterrupt\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = slow\n"
            "sys.argv = ['netcli', '--help']\n"
            "from netcli.__main__ import main\n"
            "main()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 130 and r.stderr == "interrupted\n", (r.returncode, r.stderr)


def test_the_console_script_and_python_m_netcli_start_the_cli():
    r = netcli_process("--help")
    assert r.returncode == 0 and "validate" in r.stdout, r.stderr
    assert 'netcli = "netcli.__main__:main"' in (ROOT / "pyproject.toml").read_text()


# -- what the data holds against what the model trains on ----------------------------------------


def table_config(tiny, model_type, data):
    return tiny_config(tiny, f"name: t\ndata: {{{data}, batch_size: 8}}\nmodel:\n  type: {model_type}\n"
                             "  layers: [{type: dense, units: 2}]\noptimizer: adam\n")


def test_a_classifier_on_real_valued_targets_names_the_column_and_suggests_a_regressor(tiny):
    rows = "".join(f"{a:.2f},{3 * a + 0.5:.3f}\n" for a in np.linspace(-1, 1, 30))
    (tiny / "houses.csv").write_text("size,price\n" + rows)
    p = table_config(tiny, "classifier", "dataset: csv, path: houses.csv, label_column: price")
    for command in (["validate", p], ["train", p, "--runs-dir", tiny / "runs"]):
        r = invoke(*command)
        assert_clean_error(r, f"{p}:4: model.type: a classifier needs integer class labels, but the targets in "
                              f"{tiny / 'houses.csv'} (column 'price') are real numbers (e.g. -2.5); use type: regressor")
        assert r.stderr.count("\n") == 1 and "None" not in r.stderr, r.stderr
    assert not (tiny / "runs").exists()


def test_whole_floats_or_integers_against_the_model_get_the_data_task_hint(tiny):
    x = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    np.savez(tiny / "floats.npz", x=x, y=(x[:, 0] > 0).astype(np.float32))  # 0.0 / 1.0: read as values
    np.savez(tiny / "ints.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    r = invoke("validate", table_config(tiny, "classifier", "dataset: npz, path: floats.npz"))
    assert_clean_error(r, f"the targets in {tiny / 'floats.npz'} (array 'y') are whole numbers stored as floats, read "
                          "as values; use type: regressor, or set data.task: classification to read them as class labels")
    assert invoke("validate", table_config(tiny, "classifier", "dataset: npz, path: floats.npz, task: classification"))\
        .exit_code == 0
    r = invoke("validate", table_config(tiny, "regressor", "dataset: npz, path: ints.npz"))
    assert_clean_error(r, "model.type: a regressor needs real-valued targets, but the targets in "
                          f"{tiny / 'ints.npz'} (array 'y') are integers, read as class labels; use type: classifier, "
                          "or set data.task: regression to read them as values")
