import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tiny(tmp_path):
    """A folder with tiny.yaml, train.npz and test.npz (see tinyrun.py)."""
    from tinyrun import make_tiny

    return make_tiny(tmp_path)
