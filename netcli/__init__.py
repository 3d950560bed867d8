"""netcli: declarative neural-network training on a numpy engine.

    from netcli import load_run     # a trained run as a ready model (see netcli.trained)
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load_run":  # imported on first use: `import netcli` stays light for the CLI
        from .trained import load_run

        return load_run
    raise AttributeError(f"module 'netcli' has no attribute {name!r}")
