"""Layer families, one per module. Importing this package registers every layer.

Configs that hold layer lists (``sequential``, the model types) declare them as
``list["LayerSpec"]``; once every layer is registered, ``resolve_config_refs``
completes them with the union of all layer Configs, discriminated by ``type``.
"""
import importlib
import pkgutil

from ..registry import LAYERS
from .base import GradCase, Layer, LayerConfig, ShapeError, named_params, register_layer, walk

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")


def resolve_config_refs(config_classes) -> None:
    """Complete pydantic models that declare ``list["LayerSpec"]`` fields."""
    ns = {"LayerSpec": LAYERS.union()}
    for cfg in config_classes:
        cfg.model_rebuild(_types_namespace=ns, force=True)


resolve_config_refs(cls.Config for _, cls in LAYERS.items())

__all__ = ["GradCase", "Layer", "LayerConfig", "ShapeError", "named_params",
           "register_layer", "resolve_config_refs", "walk"]
