"""`bench data ...`: check that a dataset loads (with a summary) and prepare datasets that need it."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from bench.data import CrossModalData
from bench.errors import BenchError, ConfigError
from bench.params import build


def default_cache() -> Path:
    """Where `bench run` looks for prepared files: <results>/cache, results = $BENCH_RESULTS or ./results."""
    return Path(os.environ.get("BENCH_RESULTS", "results")) / "cache"


cache_option = click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                            help="prepared-data folder (default: $BENCH_RESULTS/cache, else results/cache: where "
                                 "`bench run` looks; use <DIR>/cache with `bench run --results DIR`)")


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`k=v` strings to a dict; values are read as YAML scalars (numbers, true/false, null)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--param {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def make_dataset(name: str, params: dict[str, Any], cache_dir: Path | None) -> Any:
    """A dataset plugin instance built from validated params; its cache is <cache_dir>/<name>."""
    from bench.registry import get_dataset

    cache_dir = default_cache() if cache_dir is None else cache_dir
    cls = get_dataset(name)
    if "root" in params and "root" not in {f.name for f in dataclasses.fields(cls.Params)}:
        raise ConfigError(f"dataset {name}: has no 'root' parameter (its data is not read from a folder)")
    return cls(build(cls.Params, params, f"dataset {name}"), cache_dir=cache_dir / name)


def summarize(data: CrossModalData) -> tuple[list[str], list[str]]:
    """(summary lines, warnings) of a loaded dataset."""
    lab = data.labels.astype(np.int64)
    per_item = lab.sum(1)
    freq = lab.sum(0)
    lines = [f"{data.name}: {data.n} items, image {data.image.shape[1]}-d, text {data.text.shape[1]}-d, "
             f"{data.num_labels} labels, fingerprint {data.fingerprint()}"]
    if data.predefined_split:
        rows = ", ".join(f"{k} {len(v)}" for k, v in data.predefined_split.items())
        lines.append(f"  predefined split: {rows} (validation is carved from train by bench.splits)")
    else:
        lines.append("  predefined split: none (bench.splits draws test and validation rows, seeded)")
    lines.append(f"  labels per item: mean {per_item.mean():.2f}, min {per_item.min()}, max {per_item.max()}")
    lines.append(f"  items dropped for having no label: {int(data.info.get('dropped_unlabelled', 0))}")
    order = np.argsort(-freq, kind="stable")
    lines.append("  label frequencies: " + ", ".join(
        f"{data.label_names[i]} {int(freq[i])} ({100 * freq[i] / data.n:.1f}%)" for i in order))
    co = (lab.T @ lab) > 0
    c = data.num_labels
    pairs = c * (c - 1) / 2
    density = (np.triu(co, 1).sum() / pairs) if pairs else 0.0
    lines.append(f"  co-occurrence density: {density:.3f} of label pairs co-occur at least once"
                 + (" (adj.mat given)" if "adj" in data.extras else " (computed from labels; no adj.mat)"))
    emb = data.label_embeddings
    lines.append(f"  label embeddings: {data.label_embedding_source}"
                 + ("" if emb is None else f" ({emb.shape[0]} x {emb.shape[1]})"))
    for key, value in data.info.items():
        if key.startswith("_") or key == "dropped_unlabelled":
            continue
        lines.append(f"  {key}: {value}")
    empty = [data.label_names[i] for i in np.flatnonzero(freq == 0)]
    warnings = [f"{len(empty)} labels have no item: {', '.join(empty)}"] if empty else []
    for what, arr in (("image", data.image), ("text", data.text)):
        zero = int((np.abs(arr).sum(1) == 0).sum())
        if zero:
            warnings.append(f"{zero} items have an all-zero {what} vector")
    return lines, warnings


def benchmark_problem(data: CrossModalData) -> str | None:
    """Why a loaded dataset cannot be benchmarked (no training or no labelled test rows), or None.

    Its own split if it ships one, else the default test fraction; the validation fraction is left
    out (a tiny dataset may need a smaller one: that is a sweep setting, not a data problem)."""
    from bench.splits import SplitSpec, compute_split

    try:
        compute_split(data, SplitSpec(val=0.0))
    except BenchError as exc:
        return f"{exc} (checked with the dataset's own split, else a test fraction of 0.2)"
    return None


@click.group()
def data() -> None:
    """Check and prepare datasets."""


@data.command()
@click.argument("name")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="data folder (sets the param 'root')")
@click.option("--param", "pairs", multiple=True, metavar="K=V", help="dataset parameter (repeatable)")
@cache_option
def check(name: str, root: Path | None, pairs: tuple[str, ...], cache_dir: Path | None) -> None:
    """Load dataset NAME and print a summary, or every problem found (exit status 2: unusable data)."""
    ds = None
    try:
        params = parse_params(pairs)
        if root is not None:
            params["root"] = str(root)
        ds = make_dataset(name, params, cache_dir)
        problem = ds.missing()
        if problem and not hasattr(ds, "problems"):  # one line is all there is to say
            click.echo(f"problem: {problem}", err=True)
            sys.exit(2)
        loaded = None if problem else ds.load()
        if loaded is not None:
            problem = benchmark_problem(loaded)
            if problem:
                click.echo(f"problem: {problem}", err=True)
                sys.exit(2)
    except BenchError as exc:
        problem = str(exc)
        loaded = None
    except MemoryError as exc:
        problem = f"dataset {name}: does not fit in memory ({exc}); check its files for absurd sizes or ids"
        loaded = None
    if loaded is None:
        found = [problem]
        if ds is not None and hasattr(ds, "problems"):  # plugins that can check each file on its own list every problem
            try:
                found = ds.problems() or found
            except BenchError as exc:
                found = [str(exc)]
        for p in found:
            click.echo(f"problem: {p}", err=True)
        sys.exit(2)
    lines, warnings = summarize(loaded)
    click.echo("\n".join(lines))
    for w in warnings:
        click.echo(f"warning: {w}")


@data.command()
@click.argument("name")
@click.option("--from", "source", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="an unpacked tree instead of downloading")
@click.option("--param", "pairs", multiple=True, metavar="K=V",
              help="dataset parameter (repeatable), e.g. image_features=handcrafted")
@click.option("--workers", type=int, default=None, help="processes / threads reading images (default: up to 2)")
@click.option("--device", default="auto", show_default=True,
              help="where CNN / sentence-embedding features are computed: auto (GPU when present), cpu, cuda")
@click.option("--clean", is_flag=True, help="once the features are cached, delete the downloaded packages and tree")
@cache_option
def prepare(name: str, source: Path | None, pairs: tuple[str, ...], workers: int | None, device: str, clean: bool,
            cache_dir: Path | None) -> None:
    """Fetch and/or precompute the features of dataset NAME (e.g. openclipart); say what stays on disk."""
    import inspect

    try:
        ds = make_dataset(name, parse_params(pairs), cache_dir)
        if not hasattr(ds, "prepare"):
            raise ConfigError(f"dataset {name} needs no preparation")
        accepted = inspect.signature(ds.prepare).parameters
        kwargs: dict[str, Any] = {"source": source, "log": click.echo, "workers": workers}
        for option, value, default in (("device", device, "auto"), ("clean", clean, False)):
            if option in accepted:
                kwargs[option] = value
            elif value != default:
                raise ConfigError(f"dataset {name}: prepare has no --{option} option")
        path = ds.prepare(**kwargs)
    except BenchError as exc:
        click.echo(f"problem: {exc}", err=True)
        sys.exit(1)
    click.echo(f"prepared: {path}")
