"""The dataset plugin contract."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bench.data import CrossModalData


@dataclass
class _NoParams:
    pass


class Dataset:
    """Base class for dataset plugins.

    Subclasses set `name`, `description`, a `Params` dataclass and implement `load()`, which
    returns a validated `CrossModalData` (build it with `bench.data.make_data`). Datasets
    whose files the user must bring override `missing()` to say what is absent and how to
    get it, so a sweep can skip them with one clear line. `cache_dir` is a folder the plugin
    may use for prepared features.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type] = _NoParams

    def __init__(self, params: Any = None, cache_dir: Path | str = "results/cache") -> None:
        self.params = params if params is not None else self.Params()
        self.cache_dir = Path(cache_dir)

    def missing(self) -> str | None:
        """None when the data can be loaded; else one line saying what is missing and how to fix it."""
        return None

    def load(self) -> CrossModalData:
        """Load, validate and return the data."""
        raise NotImplementedError

    def preview(self, i: int) -> dict[str, str] | None:
        """What item `i` (a row of the loaded data) looks like, for the report's retrieval gallery:
        {"image": path of a PNG or JPEG file, "text": its caption or title}, either key optional;
        None when the raw content is not at hand (the default: feature packs keep none). A
        subclass that knows where the raw images are can add it without changing anything else."""
        return None
