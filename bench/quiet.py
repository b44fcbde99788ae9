"""What third-party libraries may do in a `bench` process: no telemetry, no tracebacks on stderr.

Telemetry: MLflow 3 sends usage telemetry (and writes ~/.config/mlflow/telemetry.json) unless
`MLFLOW_DISABLE_TELEMETRY` is true; Hugging Face's hub does unless `HF_HUB_DISABLE_TELEMETRY` is 1.
A harness run on an offline cluster must not phone home, so `switch_off_telemetry` sets both (and
`DO_NOT_TRACK`) at the start of every command, before any of those libraries is imported, for this
process and every process it starts (Dask workers, `mlflow server`). Opting in: set
`BENCH_TELEMETRY=on` (the libraries' own defaults then apply), or set a library's own variable
(e.g. `MLFLOW_DISABLE_TELEMETRY=false`): a value the user set is never replaced.

Logging: libraries log through `logging` (MLflow, SQLAlchemy, alembic, urllib3, Optuna when
routed) and `warnings`. `routed()` gives each logged warning or error one line on stderr
(`warning: <logger>: <first line>`, each distinct line once) and keeps the details (full message
and traceback, and the libraries' Python warnings: deprecations, experimental features) in memory
until `arm_log_file(results)` opens `<results>/bench.log`, which happens only once an invocation
writes (`bench.scratch.start_writing`): a refused input writes nothing.
MLflow configures its own stderr handlers unless `MLFLOW_CONFIGURE_LOGGING=false`, which is set too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
OPT_IN = "BENCH_TELEMETRY"
LOG_NAME = "bench.log"
_BUFFERED = 500  # log records kept before the log file is armed


def telemetry_wanted() -> bool:
    """Whether the user opted in to third-party telemetry (BENCH_TELEMETRY=on/1/true/yes)."""
    return os.environ.get(OPT_IN, "").strip().lower() in ("on", "1", "true", "yes")


def switch_off_telemetry() -> None:
    """Set the libraries' telemetry switches to off unless the user opted in or set them."""
    if telemetry_wanted():
        return
    for var, value in TELEMETRY_OFF.items():
        os.environ.setdefault(var, value)


class OneLine(logging.Handler):
    """Each warning or error as one line on the current stderr, each distinct line once."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "py.warnings":
            return  # Python warnings of libraries (deprecations, experimental features): the log file only
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log call must not break the command
            text = str(record.msg)
        first = next((line.strip() for line in text.splitlines() if line.strip()), record.levelname.lower())
        name = record.name.split(".")[0]
        line = f"warning: {name}: {first[:300]}"
        if line in self.seen:
            return
        self.seen.add(line)
        detail = " (details in the results folder's bench.log)" if record.exc_info else ""
        try:
            sys.stderr.write(line + detail + "\n")
        except (OSError, ValueError):
            pass


class Details(logging.Handler):
    """Full records (tracebacks included): buffered until `arm` names the file, then appended to it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [pid %(process)d]: %(message)s"))
        self.buffer: list[logging.LogRecord] = []
        self.path: Path | None = None

    def arm(self, path: Path) -> None:
        """Write the buffered and every later record to `path` (appended)."""
        self.path = path
        pending, self.buffer = self.buffer, []
        for record in pending:
            self.emit(record)

    def emit(self, record: logging.LogRecord) -> None:
        if self.path is None:
            if len(self.buffer) < _BUFFERED:
                self.buffer.append(record)
            return
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(self.format(record) + "\n")
        except (OSError, ValueError):
            pass


_DETAILS: list[Details] = []


def arm_log_file(results: Path) -> None:
    """Start writing the details of library messages to `<results>/bench.log` (see the module docstring)."""
    for handler in _DETAILS:
        handler.arm(Path(results) / LOG_NAME)


@contextlib.contextmanager
def routed() -> Iterator[None]:
    """For one command: telemetry off (unless opted in), library logs and warnings routed as above;
    on exit the environment, the temporary folder and the logging set-up are restored (commands
    invoked in one process, as tests do, do not leak into each other)."""
    env, tempdir = dict(os.environ), tempfile.tempdir
    switch_off_telemetry()
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    root = logging.getLogger()
    handlers = [OneLine(), Details()]
    level = root.level
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(min(level or logging.WARNING, logging.WARNING))
    _DETAILS.append(handlers[1])
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        logging.captureWarnings(False)
        _DETAILS.remove(handlers[1])
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(level)
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = tempdir
