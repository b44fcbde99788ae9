"""User-facing errors: one line naming what is wrong and how to fix it."""

from __future__ import annotations


class BenchError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits non-zero."""


class ConfigError(BenchError):
    """A sweep file or parameter is malformed."""


class DataError(BenchError):
    """A dataset is missing, malformed or inconsistent."""


class UnknownNameError(BenchError):
    """A method or dataset name is not registered."""
