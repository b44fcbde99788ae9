"""Where a user's dataset folder is: param `root`, env vars, or the user config file."""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import DataError


def env_var(name: str) -> str:
    """The per-dataset environment variable, e.g. BENCH_DATA_MIRFLICKR."""
    return "BENCH_DATA_" + "".join(ch if ch.isalnum() else "_" for ch in name.upper())


def config_path() -> Path:
    """The user config file mapping dataset names to folders."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "bench" / "data.yaml"


def _from_config(name: str) -> str | None:
    path = config_path()
    if not os.path.lexists(path):
        return None
    from bench.errors import ConfigError
    from bench.readers import read_yaml

    try:  # the strict reader of every YAML input: regular file, size cap, no duplicate keys or alias bombs
        table = read_yaml(path, "dataset folders file") or {}
    except ConfigError as exc:
        raise DataError(f"{exc}; expected 'name: /folder' lines") from None
    if not isinstance(table, dict):
        raise DataError(f"{path}: expected a mapping of dataset name to folder, got {type(table).__name__}")
    value = table.get(name)
    if value is not None and (not isinstance(value, str) or not value.strip() or "\x00" in value):
        raise DataError(f"{path}: {name}: expected a folder path, got {type(value).__name__} {str(value)[:60]!r}")
    return value


def find_root(name: str, root: str | None) -> tuple[Path | None, str]:
    """(folder or None, where it came from) in the order: param, env var, $BENCH_DATA/<name>, config."""
    if root:
        return Path(root).expanduser(), "param root"
    var = env_var(name)
    if os.environ.get(var):
        return Path(os.environ[var]).expanduser(), f"env {var}"
    if os.environ.get("BENCH_DATA"):
        cand = Path(os.environ["BENCH_DATA"]).expanduser() / name
        if cand.exists():
            return cand, "env BENCH_DATA"
    value = _from_config(name)
    if value:
        return Path(value).expanduser(), str(config_path())
    return None, ""


def how_to_provide(name: str) -> str:
    """The one-line hint of every way to name a dataset folder."""
    return (f"set the dataset param root, env {env_var(name)}=DIR, env BENCH_DATA=DIR holding {name}/, "
            f"or '{name}: DIR' in {config_path()}")
