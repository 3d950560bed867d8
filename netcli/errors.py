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
