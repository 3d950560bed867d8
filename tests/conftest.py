import numpy as np
import pytest

from netcli import backend as B


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tiny(tmp_path):
    """A folder with tiny.yaml, train.npz and test.npz (see tinyrun.py)."""
    from tinyrun import make_tiny

    return make_tiny(tmp_path)


@pytest.fixture
def threads(monkeypatch):
    """Run a test at a given thread count, with every array split however small; restored afterwards."""
    before = B.threads()
    monkeypatch.setattr(B, "min_chunk_cost", 1)
    yield B.set_threads
    B.set_threads(before)


@pytest.fixture(scope="session")
def ui_runs(tmp_path_factory):
    """Tiny trained runs under one runs directory (tests/uirig.py), plus a symlink out of it and a secret."""
    from uirig import make_runs

    base = tmp_path_factory.mktemp("ui")
    root, outside = base / "runs", base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the page")
    runs = make_runs(root, base)
    fake_run = outside / "elsewhere"
    fake_run.mkdir()
    (fake_run / "config.yaml").write_text("name: elsewhere\n")
    (root / "link_out").symlink_to(outside)  # symlinks out of the runs directory: to a folder, to a run
    (root / "evil").symlink_to(fake_run)
    return root, runs


@pytest.fixture(scope="session")
def ui_server(ui_runs):
    """A live `netcli ui` server over ui_runs; its base URL."""
    from uirig import LiveServer

    server = LiveServer(ui_runs[0])
    yield server.url
    server.stop()
