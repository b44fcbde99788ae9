"""The `bench` command line."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Benchmark harness for multi-label cross-modal retrieval."""
