"""Errors a user can cause. The CLI prints their one-line message and exits with code 2."""


class UserError(Exception):
    """A mistake in a config, a command line, a data file or a run directory."""

    exit_code = 2


class ConfigError(UserError):
    """One or more problems in an experiment file, each already formatted as `file:line: key: message`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class CheckpointError(UserError):
    """A checkpoint that is missing, damaged, or does not fit the model."""


class RunError(UserError):
    """A run directory that cannot be used (missing, unwritable, incomplete)."""


class MissingExtra(UserError):
    """An optional capability whose library is not installed."""


def require_extra(module: str, extra: str):
    """Import ``module``, or fail with one line naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"this needs {module.split('.')[0]}, which is not installed: "
                           f"pip install 'netcli[{extra}]'") from None
