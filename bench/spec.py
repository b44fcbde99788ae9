"""`RunSpec`, one fully resolved run, and its run key: what a record is filed under.

The run key hashes what determines a result: the dataset and its parameters, the split, the
missing-modality protocol, the method and every parameter, the seed, and the method's code
version (its plugin module and the plugin modules it uses). The code version ignores comments,
docstrings and blank lines, so documenting a method keeps its records; any other edit makes them
stale and the next `bench run` redoes them.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import io
import json
import sys
import tokenize
import types
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunSpec:
    """One fully resolved run: a dataset configuration, a method with all its parameters, a seed."""

    sweep: str
    dataset: str
    dataset_label: str
    dataset_params: dict[str, Any]
    split: dict[str, Any]
    missing: dict[str, Any] | None
    missing_policy: str
    method: str
    method_label: str
    family: str
    params: dict[str, Any]
    seed: int
    optional: bool = False
    code_version: str = ""
    test_selected: bool = False  # also measure the optimistic test-selected figure

    @property
    def key(self) -> str:
        """Run key: hash of the canonical resolved spec and the method's code version."""
        return run_key(self)

    @property
    def data_key(self) -> str:
        """What identifies the loaded dataset (plugin and parameters): runs sharing it share one load."""
        return json.dumps([self.dataset, self.dataset_params], sort_keys=True, default=str)

    def describe(self) -> str:
        """A short human-readable name of the run."""
        return f"{self.dataset_label} | {self.method_label} | seed {self.seed}"


def run_key(spec: RunSpec) -> str:
    """sha256 over the canonical JSON of what determines a result (not labels, not the device)."""
    payload = {
        "dataset": spec.dataset, "dataset_params": spec.dataset_params, "split": spec.split,
        "missing": spec.missing, "missing_policy": spec.missing_policy, "method": spec.method,
        "params": spec.params, "seed": spec.seed, "code": spec.code_version,
    }
    if spec.test_selected:
        payload["test_selected"] = True
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plugin_modules(module: types.ModuleType) -> list[types.ModuleType]:
    """`module` and every module of the same plugin package it uses, transitively (e.g. methods/common)."""
    root = module.__name__.split(".")[0]
    seen: dict[str, types.ModuleType] = {}
    stack = [module]
    while stack:
        mod = stack.pop()
        if mod.__name__ in seen:
            continue
        seen[mod.__name__] = mod
        for value in vars(mod).values():
            name = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if isinstance(name, str) and name.split(".")[0] == root and name not in seen and name in sys.modules:
                stack.append(sys.modules[name])
    return [seen[k] for k in sorted(seen)]


def code_text(source: str) -> str:
    """`source` without comments, docstrings and blank lines (trailing spaces dropped): what the
    code version hashes. The same on every Python version (only positions from ast and tokenize)."""
    lines = source.splitlines()
    blank: list[tuple[int, int, int, int]] = []  # (start line, start col, end line, end col), 1-based lines
    try:
        tree = ast.parse(source)
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
                first = body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                        and isinstance(first.value.value, str):
                    blank.append((first.lineno, first.col_offset, first.end_lineno, first.end_col_offset))
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                blank.append((tok.start[0], tok.start[1], tok.end[0], tok.end[1]))
    except (SyntaxError, tokenize.TokenError):
        return source
    for l0, c0, l1, c1 in sorted(blank, reverse=True):  # from the end, so earlier positions stay valid
        if l0 == l1:
            lines[l0 - 1] = lines[l0 - 1][:c0] + lines[l0 - 1][c1:]
        else:
            lines[l0 - 1:l1] = [lines[l0 - 1][:c0] + lines[l1 - 1][c1:]]
    return "\n".join(line.rstrip() for line in lines if line.strip())


def code_version(cls: type) -> str:
    """Hash of the plugin's code and of the plugin modules it uses (see `code_text`)."""
    module = inspect.getmodule(cls)
    if module is None:
        return hashlib.sha256(f"{cls.__module__}.{cls.__qualname__}".encode()).hexdigest()[:12]
    # sources only: module names depend on how (and in which order) plugin folders were discovered
    parts = []
    for mod in plugin_modules(module):
        try:
            parts.append(hashlib.sha256(code_text(inspect.getsource(mod)).encode()).hexdigest())
        except (OSError, TypeError):
            parts.append(mod.__name__)
    return hashlib.sha256("".join(sorted(parts)).encode()).hexdigest()[:12]
