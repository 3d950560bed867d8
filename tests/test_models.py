"""Every registered model type: its whole loss passes a float64 finite-difference check.

The cases come from each model type's ``grad_cases()``, found by iterating the
registry, so a newly registered model type that lists no cases fails here.
"""
import numpy as np
import pytest

import netcli.models  # noqa: F401  (registers every model type)
from netcli.gradcheck import check_model
from netcli.registry import MODELS
from registry_cases import registry_cases


def built_model(name: str, case: int = 0):
    """A model of a registered type built from its first gradient-check case (float32)."""
    spec = MODELS.get(name).grad_cases()[case]
    model = MODELS.build({"type": name, **spec.config})
    model.setup(spec, np.random.default_rng(0))
    return model


@pytest.mark.parametrize("name,case", list(registry_cases(MODELS)))
def test_model_loss_gradients(name, case):
    assert case is not None, f"model type '{name}' is registered without gradient-check cases"
    report = check_model(name, case)
    assert report.errors, "nothing was checked"
    assert report.ok(1e-6), f"{name} {case.note or case.config}: {report}"
