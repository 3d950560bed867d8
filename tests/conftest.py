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
