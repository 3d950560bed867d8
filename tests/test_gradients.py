"""Every registered layer passes a float64 finite-difference check on its input and all params.

The cases come from each layer's ``grad_cases()``, found by iterating the
registry, so a newly registered layer that lists no cases fails here.
"""
import pytest

import netcli.layers  # noqa: F401  (registers every layer)
from netcli.gradcheck import check_layer, layer_contract
from netcli.registry import LAYERS
from registry_cases import registry_cases


@pytest.mark.parametrize("name,case", list(registry_cases(LAYERS)))
def test_layer_gradients(name, case):
    assert case is not None, f"layer '{name}' is registered without gradient-check cases"
    report = check_layer(name, case)
    assert report.ok(1e-6), f"{name} {case}: {report}"
    assert report.errors, "nothing was checked"


@pytest.mark.parametrize("name,case", list(registry_cases(LAYERS)))
def test_layer_contract(name, case):
    """Forward and backward leave the input as it was; a second backward adds to the gradients."""
    assert case is not None, f"layer '{name}' is registered without gradient-check cases"
    broken = [what for what, ok in layer_contract(name, case).items() if not ok]
    assert not broken, f"{name} {case}: {broken}"
