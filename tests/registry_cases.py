"""Gradient-check cases of every entry of a registry, as pytest params (shared by layer and loss tests)."""
import pytest


def registry_cases(registry):
    """One param per (name, case); an entry that lists no cases gets one param with case None, which must fail."""
    for name, cls in registry.items():
        try:
            cases = cls.grad_cases()
        except NotImplementedError:
            cases = []
        if not cases:
            yield pytest.param(name, None, id=f"{name}-missing")
        for i, case in enumerate(cases):
            yield pytest.param(name, case, id=f"{name}-{i}")
