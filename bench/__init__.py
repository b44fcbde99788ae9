"""bench: a benchmark harness for multi-label cross-modal retrieval."""

__version__ = "0.1.0"
