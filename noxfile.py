"""nox sessions: tests, lint, quick (the embedded default sweep), perf (benchmarks), integration (PostgreSQL),
browser (screenshots), docs (the manual)."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, extras: str = "dev") -> None:
    # torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build.
    session.install("torch==2.13.0")
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (what CI runs; the vision extra is needed by the image feature tests)."""
    _install(session, "dev,vision")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the package, plugins, tests and benchmarks."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "bench", "methods", "datasets", "tests", "benchmarks", "noxfile.py")


@nox.session
def quick(session: nox.Session) -> None:
    """The embedded default run: the quick sweep (the TPAMI 2023 model, ablations, baselines), then its report."""
    _install(session)
    session.run("bench", "run", "sweeps/quick.yaml")
    session.run("bench", "report", "quick")


@nox.session
def perf(session: nox.Session) -> None:
    """Benchmarks that print measured speed ratios (not tests)."""
    _install(session)
    session.run("python", "benchmarks/metrics_speed.py")
    session.run("python", "benchmarks/train_throughput.py", *session.posargs)
    session.run("python", "benchmarks/sweep_scaling.py")


@nox.session
def browser(session: nox.Session) -> None:
    """Headless Chromium looks at the html report and the grouped MLflow view (needs Debian's chromium)."""
    _install(session)
    session.run("python", "tests/browser/check_pages.py", *(session.posargs or ["results/browser"]))


@nox.session
def integration(session: nox.Session) -> None:
    """PostgreSQL as Optuna storage and MLflow backend, from two Dask workers (needs initdb/pg_ctl:
    `apt-get install -y postgresql`; as root, PostgreSQL is started as the `postgres` user)."""
    _install(session, "dev,postgres")
    session.run("pytest", "-m", "integration", "tests/test_integration_postgres.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The manual: `mkdocs build --strict` into site/ (offline); `nox -s docs -- serve` serves it with live reload."""
    _install(session, "docs")
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's banner about MkDocs 2.0: noise in a log
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:])
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs)
