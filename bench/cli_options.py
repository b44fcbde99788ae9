"""Options and parameter types shared by the command modules (`bench.cli`, `bench.cli_report`,
`bench.cli_data`): the results folder, plugin folders, checked numbers, text and thread counts."""

from __future__ import annotations

import os
from pathlib import Path

import click

from bench.errors import BenchError


def results_root(value: str | None) -> Path:
    """--results, else $BENCH_RESULTS, else ./results (an empty value is an error, not the current folder)."""
    if value is not None:
        return Path(value)
    env = os.environ.get("BENCH_RESULTS")
    if env is not None and not env.strip():
        raise BenchError("BENCH_RESULTS is set but empty; unset it or name a results folder")
    return Path(env or "results")


class Number(click.ParamType):
    """An option's number, through the same check as every parameter (`bench.params.check_number`):
    finite, 64-bit, within [low, high]."""

    def __init__(self, integer: bool, low: float | None = None, high: float | None = None) -> None:
        self.integer, self.low, self.high = integer, low, high
        self.name = "integer" if integer else "number"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        """The checked number, or a one-line usage error naming the option."""
        from bench.errors import ConfigError
        from bench.params import check_number

        if isinstance(value, str):
            text = value.strip()
            try:
                value = int(text) if self.integer and text.lstrip("+-").isdigit() else float(text)
            except (ValueError, OverflowError):
                self.fail(f"{text[:40]!r} is not {'an integer' if self.integer else 'a number'}", param, ctx)
        try:
            return check_number(value, "value", integer=self.integer, low=self.low, high=self.high)
        except ConfigError as exc:
            self.fail(str(exc).removeprefix("value: "), param, ctx)


class Text(click.ParamType):
    """A non-empty option value without NUL or control characters (an empty --results, --scheduler,
    --host... is an error, never a silent default)."""

    name = "text"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        """The value, or a one-line usage error naming the option."""
        if not isinstance(value, str):
            return value
        if not value.strip():
            self.fail("is empty; give a value or leave the option out", param, ctx)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            self.fail("contains control characters (newline, NUL, ...)", param, ctx)
        return value


TEXT = Text()


MAX_PROCESSES = 1024  # --workers and --threads: more is a typo, not a machine


class ThreadsType(click.ParamType):
    """`auto` (None) or a positive number of threads."""

    name = "auto|N"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if value is None or value == "auto":
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{str(value)[:40]!r} is not 'auto' or a positive number of threads", param, ctx)
        if not 1 <= number <= MAX_PROCESSES:
            self.fail(f"{str(value)[:40]!r} is not 'auto' or a number of threads between 1 and {MAX_PROCESSES}",
                      param, ctx)
        return number


threads_option = click.option("--threads", type=ThreadsType(), default="auto", show_default=True,
                              help="torch CPU threads per run: auto (the cores idle when each run starts, so a "
                                   "shared machine does not collapse) or N (fixed: reproducible to the last bit); "
                                   "each Dask worker uses N, default 1")


def _request_plugins(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    if value:
        from bench.registry import request_plugins

        request_plugins(value, "--plugins")


plugins_option = click.option("--plugins", type=TEXT, multiple=True, metavar="DIR", expose_value=False,
                              callback=_request_plugins,
                              help="a plugin folder (holding methods/ and/or datasets/) to import; repeatable")
results_option = click.option("--results", "results", type=TEXT, default=None, metavar="DIR",
                              help="results folder (default $BENCH_RESULTS or ./results)")


MAX_MESSAGE = 390  # characters of an error message shown on its one line


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message on one line of at most `limit` characters; a long one loses its middle (the fix is at the end)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    tail = limit // 3
    return text[:limit - tail - 5] + " ... " + text[-tail:]
