"""Reading user input files: one strict YAML reader for sweep files, `--cluster` files and
command-line values, with one-line errors naming the file.

YAML is read with PyYAML's safe loader, refusing duplicate keys (YAML's last-one-wins hides
typos) and documents whose aliases expand beyond `MAX_YAML_NODES` values (an alias bomb of a few
hundred bytes would otherwise take minutes and gigabytes) or nest deeper than `MAX_YAML_DEPTH`
levels. JSON (`params_from` files, records) is read by `read_json` with the same file rules and a
one-line error for nesting that would exhaust the recursion limit.

Only regular files are read: a path is opened without blocking and checked on the open file (a
FIFO would block for ever, a device such as /dev/zero never ends), and none larger than the
caller's cap (`MAX_INPUT_BYTES` for configuration files) is read.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ConfigError
from bench.params import short

__all__ = ["short", "load_yaml_text", "read_text_file", "read_yaml", "read_json"]

MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64  # nesting levels of a YAML document, aliases expanded (a sweep file needs about 6)
MAX_INPUT_BYTES = 8 * 2**20  # a sweep or config file is a few kB; anything this large is a mistake


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

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:  # type: ignore[override]
        # PyYAML composes recursively: stop a deeply nested document before Python's recursion limit
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"{self.name}: line {mark.line + 1}, column {mark.column + 1}: nested more than "
                                  f"{MAX_YAML_DEPTH} levels deep; flatten it")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_shape(root: yaml.Node, limit: int) -> tuple[int, int]:
    """(values, depth) of the document once every alias is expanded, without recursion: each shared
    node is measured once; a count past `limit` (or a node containing itself) stops the walk."""
    memo: dict[int, tuple[int, int]] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    busy: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        if id(node) in memo:
            continue
        children = _children(node)
        if not children_done:
            if id(node) in busy:  # reached again while its children are pending: it contains itself
                return limit + 1, MAX_YAML_DEPTH + 1
            busy.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in memo)
            continue
        busy.discard(id(node))
        sizes = [memo[id(c)] for c in children]
        total = 1 + sum(size for size, _ in sizes)
        depth = 1 + max((d for _, d in sizes), default=0)
        memo[id(node)] = (total, depth)
        if total > limit:
            return total, depth
    return memo[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml_text(text: str, name: str) -> Any:
    """Parse YAML `text` strictly; `name` (a file, or `override 'k=v'`) starts every error message."""
    loader = _StrictLoader(text)
    loader.name = name
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size, depth = _expanded_shape(node, MAX_YAML_NODES)
        if size > MAX_YAML_NODES:
            raise ConfigError(f"{name}: the YAML expands to more than {MAX_YAML_NODES} values through its aliases "
                              "(&anchor / *alias); write the values out or use fewer aliases")
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{name}: the YAML nests more than {MAX_YAML_DEPTH} levels deep once its aliases "
                              "are expanded; flatten it")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{name}:{at}: invalid YAML: {short(problem, 200)}") from None
    except RecursionError:  # a backstop: the depth limit above should come first
        raise ConfigError(f"{name}: the YAML nests too deeply; flatten it") from None
    finally:
        loader.dispose()


def read_bytes_file(path: Path, what: str, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (one-line ConfigError otherwise).

    The file is opened without blocking (a FIFO opens at once instead of waiting for a writer) and
    checked on the open descriptor, so what is checked is what is read.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{path}: is a folder, not a {what}")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: is not a regular file (a pipe or device?); pass a {what}")
        if info.st_size > max_bytes:
            raise ConfigError(f"{path}: {info.st_size} bytes is too large for a {what} (at most {max_bytes})")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from None
    if len(data) > max_bytes:  # it grew while being read
        raise ConfigError(f"{path}: more than {max_bytes} bytes is too large for a {what}")
    return data


def read_text_file(path: Path, what: str, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text (a leading byte-order mark dropped) of a regular file of at most `max_bytes`."""
    try:
        return read_bytes_file(path, what, max_bytes).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot read the {what} as UTF-8 text") from None


def read_json(path: Path, what: str, max_bytes: int = MAX_INPUT_BYTES) -> Any:
    """Parse a JSON file (see `read_text_file`); malformed or too deeply nested JSON is one line."""
    text = read_text_file(path, what, max_bytes)
    try:
        return json.loads(text)
    except RecursionError:
        raise ConfigError(f"{path}: the {what} nests too deeply to be read") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: the {what} is not valid JSON ({short(exc, 120)})") from None


def read_yaml(path: Path, what: str = "YAML file") -> Any:
    """Safe-load a YAML file strictly (see the module docstring) with one-line errors."""
    return load_yaml_text(read_text_file(path, what), str(path))
