"""`bench data ...`: check that a dataset loads (with a summary) and prepare datasets that need it.

Both commands follow the README's rule for bad input: every problem is one line `problem: ...`
(whitespace collapsed, at most 390 characters) and the exit status is 2, for unusable data, bad
folders and bad parameters alike. `--param` values go through the strict YAML reader of every
command-line value, and the numbers through the one number check (`bench.params.check_number`); a
dataset whose plugin estimates more memory than the machine has is refused before it is built.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from bench.cli_options import results_root
from bench.data import CrossModalData
from bench.errors import BenchError, ConfigError
from bench.params import build, short

MAX_PARAM = 2000  # characters of one --param; longer is a mistake, not a value


def default_cache() -> Path:
    """Where `bench run` looks for prepared files: <results>/cache, results = $BENCH_RESULTS or ./results."""
    return results_root(None) / "cache"


cache_option = click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                            help="prepared-data folder (default: $BENCH_RESULTS/cache, else results/cache: where "
                                 "`bench run` looks; use <DIR>/cache with `bench run --results DIR`)")


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`k=v` strings to a dict; values are read as YAML flow values (numbers, true/false, null, lists)
    by the strict reader every command-line value goes through (`bench.readers.load_yaml_text`)."""
    from bench.readers import load_yaml_text

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--param {short(pair)!r}: expected key=value")
        key, value = pair.split("=", 1)
        if not key.strip():
            raise ConfigError(f"--param {short(pair)!r}: the key is empty; write key=value")
        if len(pair) > MAX_PARAM:
            raise ConfigError(f"--param {short(pair)!r}: longer than {MAX_PARAM} characters")
        out[key.strip()] = load_yaml_text(value, f"--param {short(pair)!r}") if value.strip() else ""
    return out


def problem_exit(problems: list[str]) -> None:
    """Print each problem as one line (bounded, whitespace collapsed) and exit 2: unusable input."""
    from bench.cli_options import one_line

    for problem in problems:
        click.echo(f"problem: {one_line(problem)}", err=True)
    sys.exit(2)


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


def _load(ds: Any, name: str) -> CrossModalData:
    """Load a dataset; a size the machine cannot hold is a BenchError (estimated first when the plugin
    can, as `bench run` does), never a MemoryError traceback."""
    from bench.memory import data_excess, machine_bytes

    excess = data_excess(ds, machine_bytes())
    if excess is not None:
        need, grown = excess
        raise BenchError(f"dataset {name}: {need}; use smaller parameters" + (f" ({grown})" if grown else ""))
    try:
        return ds.load()
    except MemoryError as exc:
        raise BenchError(f"dataset {name}: does not fit in memory ({exc}); check its files for absurd sizes or "
                         "ids") from None
    except (ValueError, OverflowError) as exc:
        raise BenchError(f"dataset {name}: cannot be built with its parameters ({type(exc).__name__}: "
                         f"{short(exc, 200)})") from None


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
            problem_exit([problem])
        loaded = None if problem else _load(ds, name)
        if loaded is not None:
            problem = benchmark_problem(loaded)
            if problem:
                problem_exit([problem])
    except BenchError as exc:
        problem = str(exc)
        loaded = None
    if loaded is None:
        found = [problem]
        if ds is not None and hasattr(ds, "problems"):  # plugins that can check each file on its own list every problem
            try:
                found = ds.problems() or found
            except BenchError as exc:
                found = [str(exc)]
        problem_exit(found)
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
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="processes / threads reading images (default: up to 2)")
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
    except BenchError as exc:  # bad input (folders, parameters, a dataset without preparation): exit 2
        problem_exit([str(exc)])
    except MemoryError as exc:
        problem_exit([f"dataset {name}: does not fit in memory ({exc}); use smaller parameters"])
    click.echo(f"prepared: {path}")
