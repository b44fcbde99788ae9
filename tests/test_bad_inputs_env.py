"""What a `bench` process does around the user's input (issue 20, classes 11, 13, 14): library logs
are one line each on stderr with the details in <results>/bench.log; no telemetry leaves the
machine; a pyproject.toml above the repository root, the home folder or in a folder anyone may write
never imports code; nothing is written outside the results folder (HOME and TMPDIR stay empty)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY_SYNTHETIC, write_sweep

BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]
# Variables that make MLflow switch its telemetry off by itself (it does so under pytest and in CI):
# the subprocesses run without them, as a user's shell would.
CI_VARS = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "TF_BUILD", "JENKINS_URL")
TELEMETRY_VARS = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "HF_HUB_DISABLE_TELEMETRY", "BENCH_TELEMETRY")
# torch sets TORCHINDUCTOR_CACHE_DIR in the test process once torch._dynamo is imported: not a user's choice
CACHE_VARS = ("TORCHINDUCTOR_CACHE_DIR", "MPLCONFIGDIR", "TRITON_HOME", "CUDA_CACHE_PATH", "XDG_CONFIG_HOME",
              "XDG_CACHE_HOME")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user's environment with an empty HOME and TMPDIR of its own."""
    env = {k: v for k, v in os.environ.items() if k not in CI_VARS + TELEMETRY_VARS + CACHE_VARS}
    for name in ("home", "tmp"):
        (tmp_path / name).mkdir(exist_ok=True)
    env.update(HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"), **extra)
    return env


def _bench(*args, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCH, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _written(tmp_path: Path) -> list[str]:
    """Everything under the fake HOME and TMPDIR (both must stay empty)."""
    return sorted(str(p.relative_to(tmp_path)) for name in ("home", "tmp") for p in (tmp_path / name).rglob("*"))


def _sweep(tmp_path: Path, methods: str = "[cca]", name: str = "envs") -> Path:
    return write_sweep(tmp_path, f"""
        name: {name}
        seeds: [0]
        datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
        methods: {methods}
    """)


# --- class 11: library logs -----------------------------------------------------------------------

NOISY = '''
    import logging
    import warnings

    import numpy as np

    from bench.method import Method
    from bench.registry import register_method


    @register_method
    class Noisy(Method):
        name = "envtest_noisy"
        description = "logs through library loggers while fitting, as MLflow and SQLAlchemy do on a full disk"

        def fit(self, train, val, ctx):
            try:
                raise OSError(28, "No space left on device")
            except OSError:
                logging.getLogger("sqlalchemy.pool.impl.QueuePool").error("Exception during reset or similar",
                                                                          exc_info=True)
                logging.getLogger("mlflow.store.db.utils").error("database or disk is full", exc_info=True)
                logging.getLogger("mlflow.store.db.utils").error("database or disk is full", exc_info=True)
            warnings.warn("an experimental feature of a library", UserWarning)
            rng = np.random.default_rng(ctx.seed)
            self.p_img = rng.normal(size=(train.image.shape[1], 4))
            self.p_txt = rng.normal(size=(train.text.shape[1], 4))

        def encode(self, image=None, text=None):
            img = None if image is None else (np.asarray(image) @ self.p_img).astype(np.float32)
            txt = None if text is None else (np.asarray(text) @ self.p_txt).astype(np.float32)
            return img, txt
'''


def test_library_errors_are_one_line_each_and_their_tracebacks_go_to_the_log(tmp_path):
    plug = tmp_path / "plug" / "methods"
    plug.mkdir(parents=True)
    (plug / "noisy.py").write_text(textwrap.dedent(NOISY))
    results = tmp_path / "results"
    out = _bench("run", _sweep(tmp_path, "[envtest_noisy]"), "--results", results, "--plugins", tmp_path / "plug",
                 cwd=tmp_path, env=_env(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "No space left" not in out.stderr, out.stderr[-3000:]
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    assert [w.split(" (details")[0] for w in warnings] == ["warning: sqlalchemy: Exception during reset or similar",
                                                           "warning: mlflow: database or disk is full"], out.stderr
    assert "experimental feature" not in out.stderr  # libraries' Python warnings: the log only
    log = (results / "bench.log").read_text()
    assert log.count("Traceback") == 3 and "No space left on device" in log and "experimental feature" in log


# --- class 13: telemetry, and the project file that may declare plugins -----------------------------


def _listener() -> tuple[socket.socket, list[bytes]]:
    """A local socket playing an HTTP(S) proxy: it records the first bytes of every connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    seen: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    seen.append(conn.recv(200))
                except OSError:
                    seen.append(b"")
    threading.Thread(target=accept, daemon=True).start()
    return server, seen


CONNECTS = '''
import os, socket
_log, _orig = os.environ["CONNECT_LOG"], socket.socket.connect
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        with open(_log, "a") as fh:
            fh.write(repr(address) + "\\n")
    return _orig(self, address)
socket.socket.connect = connect
'''


def test_a_plain_run_with_mlflow_opens_no_network_connection_and_writes_nothing_in_home(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CONNECTS)
    server, seen = _listener()
    proxy = f"http://127.0.0.1:{server.getsockname()[1]}"
    env = _env(tmp_path, HTTPS_PROXY=proxy, HTTP_PROXY=proxy, https_proxy=proxy, http_proxy=proxy, NO_PROXY="",
               no_proxy="", CONNECT_LOG=str(tmp_path / "connects.log"),
               PYTHONPATH=os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    try:
        out = _bench("run", _sweep(tmp_path), "--results", tmp_path / "results", cwd=tmp_path, env=env)
        time.sleep(1)  # a late connection would still reach the listener
    finally:
        server.close()
    assert out.returncode == 0, out.stderr[-3000:]
    assert seen == [], f"connections through the proxy: {seen}"
    log = tmp_path / "connects.log"
    assert not log.exists(), f"network connections: {log.read_text()}"
    assert _written(tmp_path) == []  # no ~/.config/mlflow/telemetry.json, no db_init_lock-* in TMPDIR


def test_telemetry_stays_off_unless_the_user_opts_in(monkeypatch):
    from bench.quiet import switch_off_telemetry

    for var in TELEMETRY_VARS:
        monkeypatch.delenv(var, raising=False)
    switch_off_telemetry()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true" and os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
    for var in TELEMETRY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BENCH_TELEMETRY", "on")
    switch_off_telemetry()
    assert "MLFLOW_DISABLE_TELEMETRY" not in os.environ
    monkeypatch.delenv("BENCH_TELEMETRY")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")  # the user's own choice is kept
    switch_off_telemetry()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"


def _declaring_project(folder: Path) -> None:
    """A pyproject.toml in `folder` declaring a plugin folder whose dataset would announce itself."""
    data = folder / "plug" / "datasets"
    data.mkdir(parents=True)
    (data / "planted.py").write_text(textwrap.dedent("""
        from bench.dataset import Dataset
        from bench.registry import register_dataset


        @register_dataset
        class Planted(Dataset):
            name = "envtest_planted"
            description = "imported from a pyproject.toml nobody here wrote"
        """))
    (folder / "pyproject.toml").write_text('[tool.bench]\nplugins = ["plug"]\n')


def test_a_pyproject_in_a_folder_anyone_may_write_declares_no_plugin(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    _declaring_project(shared)
    shared.chmod(0o777 | stat.S_ISVTX)  # like /tmp
    (shared / "a" / "b").mkdir(parents=True)
    out = _bench("list", "datasets", cwd=shared / "a" / "b", env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "envtest_planted" not in out.stdout and "importing plugins" not in out.stderr


def test_the_search_for_a_declaring_pyproject_stops_at_the_repository_root(tmp_path):
    _declaring_project(tmp_path)
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "src").mkdir()
    out = _bench("list", "datasets", cwd=tmp_path / "repo" / "src", env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "envtest_planted" not in out.stdout


def test_the_search_for_a_declaring_pyproject_stops_at_the_home_folder(tmp_path):
    _declaring_project(tmp_path)
    env = _env(tmp_path)
    (tmp_path / "home" / "work").mkdir()
    out = _bench("list", "datasets", cwd=tmp_path / "home" / "work", env=env)
    assert out.returncode == 0, out.stderr
    assert "envtest_planted" not in out.stdout


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to make another user's folder")
def test_a_pyproject_in_another_users_folder_declares_no_plugin(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    _declaring_project(theirs)
    (theirs / "sub").mkdir()
    os.chown(theirs, 65534, 65534)
    out = _bench("list", "datasets", cwd=theirs / "sub", env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "envtest_planted" not in out.stdout


def test_a_declared_plugin_is_imported_within_the_project_and_its_declaring_file_is_named(tmp_path):
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    _declaring_project(project)
    (project / "notes").mkdir()
    out = _bench("list", "datasets", cwd=project / "notes", env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "envtest_planted" in out.stdout
    assert out.stderr.splitlines() == [f"bench: importing plugins from {project.resolve() / 'plug'} (declared by "
                                       f"[tool.bench] in {project.resolve() / 'pyproject.toml'})"]


# --- class 14: nothing written outside the results folder ---------------------------------------------


def test_a_tune_writes_nothing_in_home_or_the_temporary_folder(tmp_path):
    out = _bench("tune", _sweep(tmp_path), "--results", tmp_path / "results", "--trials", "2", cwd=tmp_path,
                 env=_env(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert _written(tmp_path) == []


@pytest.mark.slow  # torch.compile on CPU builds precompiled headers: about 2 minutes on 2 cores
def test_a_compiled_run_keeps_its_compiler_files_in_the_results_folder(tmp_path):
    pytest.importorskip("torch._inductor", reason="torch.compile is unavailable")
    out = _bench("run", _sweep(tmp_path, "[{name: pgnn_con, params: {epochs: 1, D: 8, layers: 1, compile: true}}]"),
                 "--results", tmp_path / "results", "--no-mlflow", cwd=tmp_path, env=_env(tmp_path), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _written(tmp_path) == []  # no torchinductor_<user> (about 150 MB) in TMPDIR
    assert any((tmp_path / "results" / "cache").rglob("*.so")), "the compiled kernels are under results/cache"


@pytest.mark.slow
def test_a_killed_run_on_workers_leaves_its_fork_server_folder_inside_the_results_folder(tmp_path):
    import psutil

    sweep = _sweep(tmp_path, "[{name: pgnn_con, params: {epochs: 100000, D: 8, layers: 1}}]")  # killed long before
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*BENCH, "run", str(sweep), "--results", str(tmp_path / "results"), "--workers", "2",
                             "--no-mlflow"], cwd=tmp_path, env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((tmp_path / "results" / "cache" / "tmp").glob("pymp-*")):
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-2000:]
            time.sleep(0.5)
        time.sleep(3)  # the workers are up and training
        assert proc.poll() is None, (tmp_path / "run.log").read_text()[-2000:]
        family = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        psutil.wait_procs(family, timeout=30)
    finally:
        log.close()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of this run's own group is left
        except ProcessLookupError:
            pass
    assert list((tmp_path / "results" / "cache" / "tmp").glob("pymp-*"))
    assert _written(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a small tmpfs needs root")
@pytest.mark.parametrize("free", [900_000, 1_900_000])  # full while the MLflow store is created / while runs log
def test_a_full_disk_with_mlflow_on_is_one_error_line_without_library_tracebacks(tmp_path, free):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        st = os.statvfs(mount)
        (mount / "filler").write_bytes(b"x" * (st.f_bavail * st.f_frsize - free))
        seeds = ", ".join(str(s) for s in range(30))
        path = write_sweep(tmp_path, f"""
            name: full
            seeds: [{seeds}]
            datasets: [{{name: synthetic, params: {TINY_SYNTHETIC}}}]
            methods: [cca]
        """)
        out = _bench("run", path, "--results", mount / "results", cwd=tmp_path, env=_env(tmp_path))
        assert out.returncode == 1, out.stderr[-3000:]
        assert "Traceback" not in out.stderr, out.stderr[-3000:]
        assert out.stderr.strip().splitlines()[-1].startswith("error: disk full")
        assert all(line.startswith(("warning: ", "error: ")) for line in out.stderr.strip().splitlines())
    finally:
        subprocess.run(["umount", str(mount)])


def test_a_plugin_folder_that_failed_to_import_is_not_handed_to_workers(tmp_path):
    from bench.errors import BenchError
    from bench.registry import load_root, user_plugin_roots

    root = tmp_path / "plug"
    (root / "methods").mkdir(parents=True)
    (root / "methods" / "bye.py").write_text("import sys\nsys.exit(0)\n")
    with pytest.raises(BenchError, match=r"called sys.exit\(0\)"):
        load_root(root)
    assert str(root.resolve()) not in user_plugin_roots()
