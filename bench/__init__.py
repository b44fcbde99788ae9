"""bench: a benchmark harness for multi-label cross-modal retrieval."""

from bench.quiet import switch_off_telemetry

__version__ = "0.1.0"

# Every process that imports bench (the CLI, a `dask worker` that runs bench's tasks, a notebook)
# keeps third-party telemetry off unless the user opted in (BENCH_TELEMETRY=on): see bench.quiet.
switch_off_telemetry()
