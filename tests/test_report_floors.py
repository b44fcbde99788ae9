"""The report is a house with floors: no import circles, no module or function too long to read,
and the `bench report` command only parses options and hands a request to the report code."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
REPORT_MODULES = sorted(BENCH.glob("report*.py")) + [BENCH / "cli_report.py", BENCH / "stats.py"]


def _imports(path: Path) -> set[str]:
    """The bench modules a module imports (at the top or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bench."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("bench.")}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph (as a path), or None; plain depth-first search."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if state.get(nxt) is None and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if state.get(start) is None and (found := visit(start, [start])):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_report_module_takes_part_in_an_import_circle():
    graph = {p.stem: _imports(p) for p in BENCH.glob("*.py")}
    report_graph = {k: {v for v in vs if v.startswith(("report", "cli_report"))} for k, vs in graph.items()
                    if k.startswith(("report", "cli_report"))}
    assert _cycle(report_graph) is None, _cycle(report_graph)
    whole = _cycle(graph)
    assert whole is None or not any(m.startswith("report") for m in whole), whole


def test_report_modules_and_functions_stay_short():
    for path in REPORT_MODULES:
        source = path.read_text()
        assert len(source.splitlines()) <= 450, f"{path.name} has {len(source.splitlines())} lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno + 1 <= 60, f"{path.name}:{node.name} is too long"


def test_the_report_command_lives_in_its_own_module_and_only_builds_a_request():
    cli = ast.parse((BENCH / "cli.py").read_text())
    assert not any(isinstance(n, ast.FunctionDef) and n.name == "report" for n in ast.walk(cli))
    tree = ast.parse((BENCH / "cli_report.py").read_text())
    report_fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "report")
    calls = {n.func.id for n in ast.walk(report_fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    # parsing only: the request, the call that produces it, and option parsing shared with `bench run`
    assert calls <= {"ReportRequest", "produce", "Path", "results_root"}, calls


def test_figures_and_html_do_not_import_the_top_of_the_report():
    for name in ("report_figures", "report_epochs", "report_plot", "report_html", "report_frame"):
        assert "report" not in _imports(BENCH / f"{name}.py"), name
    assert _imports(BENCH / "report_html.py") == set()  # the page receives rendered tables
