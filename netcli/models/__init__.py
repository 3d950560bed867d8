"""Model types, one family per module. Importing this package registers every model type."""
import importlib
import pkgutil

from ..layers import resolve_config_refs
from ..registry import MODELS
from .base import Model, ModelConfig, register_model

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

resolve_config_refs(cls.Config for _, cls in MODELS.items())

__all__ = ["Model", "ModelConfig", "register_model"]
