"""Reading user input files: one strict YAML reader for sweep files, `--cluster` files and
command-line values, with one-line errors naming the file.

YAML is read with PyYAML's safe loader, refusing duplicate keys (YAML's last-one-wins hides
typos) and documents whose aliases expand beyond `MAX_YAML_NODES` values (an alias bomb of a few
hundred bytes would otherwise take minutes and gigabytes). Only regular files are read (a FIFO
would block for ever), and none larger than `MAX_INPUT_BYTES`.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ConfigError

MAX_YAML_NODES = 100_000
MAX_INPUT_BYTES = 8 * 2**20  # a sweep or config file is a few kB; anything this large is a mistake


def short(value: Any, limit: int = 60) -> str:
    """str(value) cut to `limit` characters (messages never quote a huge value whole)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen: dict[Any, Any] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    mark = key_node.start_mark
                    raise ConfigError(f"{self.name}: line {mark.line + 1}, column {mark.column + 1}: duplicate key "
                                      f"'{short(key)}' (first at line {seen[key] + 1}); keep one")
                seen[key] = key_node.start_mark.line
            except TypeError:  # an unhashable key: SafeLoader reports it below
                pass
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    """Nodes of the document once every alias is expanded (memoised on shared nodes; stops past limit)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = limit + 1  # a node that contains itself expands without end
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, memo, limit)
        if total > limit:
            break
    memo[id(node)] = total
    return total


def load_yaml_text(text: str, name: str) -> Any:
    """Parse YAML `text` strictly; `name` (a file, or `override 'k=v'`) starts every error message."""
    loader = _StrictLoader(text)
    loader.name = name
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise ConfigError(f"{name}: the YAML expands to more than {MAX_YAML_NODES} values through its aliases "
                              "(&anchor / *alias); write the values out or use fewer aliases")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{name}:{at}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()


def read_text_file(path: Path, what: str, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes` (one-line ConfigError otherwise)."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: is not a regular file (a pipe or device?); pass a {what}")
    if info.st_size > max_bytes:
        raise ConfigError(f"{path}: {info.st_size} bytes is too large for a {what} (at most {max_bytes})")
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot read the {what} as UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from None


def read_yaml(path: Path, what: str = "YAML file") -> Any:
    """Safe-load a YAML file strictly (see the module docstring) with one-line errors."""
    return load_yaml_text(read_text_file(path, what), str(path))
