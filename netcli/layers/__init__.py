"""Layer families, one per module. Importing this package registers every layer."""
import importlib
import pkgutil

from .base import GradCase, Layer, LayerConfig, ShapeError, named_params, register_layer, walk

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["GradCase", "Layer", "LayerConfig", "ShapeError", "named_params", "register_layer", "walk"]
