"""User plugins: Python files or modules that add layers, losses, optimizers, schedules, datasets or model types.

A plugin registers its components with the same public decorators netcli's
own use (``register_layer``, ``register_loss``, ...). A config names its
plugins, resolved relative to the config file, and ``netcli --plugin FILE``
adds one from the command line:

    plugins: [my_layers.py]          # or a module on the Python path: [mypackage.layers]

Loading a plugin imports it once per process and rebuilds the config models,
so its components validate, appear in ``netcli schema`` and ``netcli list``
and build like built-in ones. The resolved config records each plugin with
its content hash (``{path: /abs/my_layers.py, sha256: ...}``); resuming a run
whose plugin changed is refused unless ``--allow-config-change``. A plugin that
fails to import is one line: its file and line and the error.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import UserError
from .userfiles import absolute, check_file


class PluginError(UserError):
    """A plugin that cannot be found or fails to import."""


class PluginRef(BaseModel):
    """One entry of ``plugins:``: a .py file (relative to the config) or a module name, and its content hash."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, description="a .py file (relative paths: from the config file's folder) "
                                                "or a module name on the Python path")
    sha256: Optional[str] = Field(None, pattern=r"^[0-9a-f]{64}$",
                                  description="content hash, recorded by netcli in a run's config.yaml")

    @model_validator(mode="before")
    @classmethod
    def _bare_path(cls, v):
        return {"path": v} if isinstance(v, str) else v


@dataclass
class Plugin:
    path: str      # the absolute file, or the module name as given
    file: Path     # the source file that was imported
    sha256: str


_LOADED: dict[Path, Plugin] = {}     # by source file: each plugin is imported once per process
COMMAND_LINE: list[Plugin] = []      # from `netcli --plugin`: every config loaded in this process records them


def is_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def load(spec: str, base_dir: Path | None = None, where: str = "") -> Plugin:
    """Import the plugin file or module ``spec`` (files relative to ``base_dir``); return its record."""
    where = f"{where}: " if where else ""
    if is_file(spec):
        file = Path(spec).expanduser()
        file = absolute(file if file.is_absolute() or base_dir is None else Path(base_dir) / file)
        if not os.path.lexists(file):
            raise PluginError(f"{where}plugin file {file} not found")
        check_file(file, lambda message: PluginError(f"{where}plugin file {message}"))  # a loop, a folder, ...
        path = str(file)
    else:
        try:
            found = importlib.util.find_spec(spec)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.origin or not Path(found.origin).is_file():
            raise PluginError(f"{where}no plugin module '{spec}' on the Python path (a file needs its .py suffix)")
        file, path = Path(found.origin).resolve(), spec
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    if file not in _LOADED:
        _import(file, spec, sha)
        _LOADED[file] = Plugin(path, file, sha)
        from .config import refresh_config_models

        refresh_config_models()
    return Plugin(path, file, sha)


def _import(file: Path, spec: str, sha: str) -> None:
    name = spec if not is_file(spec) else f"netcli_plugin_{file.stem}_{sha[:8]}"
    module_spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[name]
        raise PluginError(f"{e.filename or file}:{e.lineno}: plugin does not parse: {e.msg}") from None
    except Exception as e:  # anything the plugin's own code raises, registration mistakes included
        del sys.modules[name]
        frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == file]
        line = f":{frames[-1].lineno}" if frames else ""
        raise PluginError(f"{file}{line}: plugin failed to import: {type(e).__name__}: {e}") from None


def load_command_line(specs: list[str]) -> None:
    """``netcli --plugin FILE``: load now (relative to the working directory); configs loaded later record them."""
    for spec in specs:
        plugin = load(spec, Path.cwd(), f"--plugin {spec}")
        if all(p.file != plugin.file for p in COMMAND_LINE):
            COMMAND_LINE.append(plugin)


def load_config_plugins(raw: dict, lines: dict, source: str, base_dir: Path) -> None:
    """Load the plugins a raw config names (and those from the command line), recording path and hash in ``raw``.

    A recorded hash that differs from the file's warns here; resuming compares the whole config and refuses.
    """
    entries = raw.get("plugins")
    if entries is None and not COMMAND_LINE:
        return
    if not isinstance(entries, (list, type(None))):
        return  # validation reports the wrong type with its line
    recorded: list = []
    for i, item in enumerate(entries or []):
        spec = item.get("path") if isinstance(item, dict) else item
        if not isinstance(spec, str) or not spec:
            recorded.append(item)  # validation reports it
            continue
        line = lines.get(("plugins", i), lines.get(("plugins",)))
        where = line if isinstance(line, str) else f"{source}:{line}" if line else source
        plugin = load(spec, base_dir, f"{where}: plugins.{i}")
        old = item.get("sha256") if isinstance(item, dict) else None
        if old and old != plugin.sha256:
            warnings.warn(f"{where}: plugins.{i}: {plugin.file} changed since this config recorded it")
        recorded.append({"path": plugin.path, "sha256": plugin.sha256})
    files = {Path(r["path"]).resolve() if is_file(r["path"]) else r["path"] for r in recorded if isinstance(r, dict)
             and isinstance(r.get("path"), str)}
    for p in COMMAND_LINE:
        if p.file not in files and p.path not in files:
            lines[("plugins", len(recorded))] = "--plugin"
            recorded.append({"path": p.path, "sha256": p.sha256})
    raw["plugins"] = recorded
