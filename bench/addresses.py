"""Checks of the network addresses an invocation needs, each bounded by a timeout, made before
anything is written: a Dask scheduler (`--scheduler`), a database server behind an MLflow tracking
URI or an Optuna `--storage` URL, and a host to serve on (`bench ui --host`).

Name resolution runs in a helper thread so that a resolver that never answers costs at most the
timeout; TCP connections and database logins carry the same timeout.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from bench.errors import BenchError
from bench.params import short

TIMEOUT_S = 5.0
DASK_SCHEMES = ("tcp", "tls")
SERVER_DATABASES = ("postgresql", "mysql", "mariadb", "mssql", "oracle")
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}


def resolve(host: str, port: int, what: str, timeout: float = TIMEOUT_S) -> list[tuple]:
    """getaddrinfo(host, port) within `timeout` seconds (BenchError naming `what` otherwise)."""
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            out["error"] = exc

    thread = threading.Thread(target=work, name="bench-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise BenchError(f"{what}: the name {short(host)} does not resolve within {timeout:g} s; check it and the DNS")
    if "error" in out:
        reason = getattr(out["error"], "strerror", None) or str(out["error"])
        raise BenchError(f"{what}: unknown host {short(host)!r} ({reason}); check the name or use an IP address")
    return out["infos"]


def probe_tcp(host: str, port: int, what: str, fix: str, timeout: float = TIMEOUT_S) -> None:
    """Something accepts TCP connections at host:port within `timeout` seconds, else a BenchError."""
    infos = resolve(host, port, what, timeout)
    reason = "no address"
    for family, kind, proto, _name, addr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(addr)
                return
            except OSError as exc:
                reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
    raise BenchError(f"{what}: nothing answers at {short(host)}:{port} within {timeout:g} s ({reason}); {fix}")


def split_host_port(text: str, what: str, default_port: int | None = None) -> tuple[str, int]:
    """('host', port) of 'host:port', '[v6]:port' or 'host' (with `default_port`); BenchError when malformed."""
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BenchError(f"{what}: {short(text)!r} has an unclosed '[' (write [::1]:PORT)")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise BenchError(f"{what}: {short(text)!r} is not [IPv6]:PORT")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif text.count(":") > 1:
        raise BenchError(f"{what}: {short(text)!r}: write an IPv6 address in brackets, [::1]:PORT")
    if not host:
        raise BenchError(f"{what}: {short(text)!r} has no host name")
    if port is None or port == "":
        if default_port is None:
            raise BenchError(f"{what}: {short(text)!r} has no port; write HOST:PORT")
        return host, default_port
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise BenchError(f"{what}: port {short(port)!r} is not a number from 1 to 65535")
    return host, int(port)


def check_scheduler(address: str, timeout: float = TIMEOUT_S) -> None:
    """A Dask scheduler address (tcp://host:port, tls://host:port or host:port) that answers."""
    what = f"--scheduler {short(address)}"
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme not in DASK_SCHEMES:
        raise BenchError(f"{what}: unknown protocol '{short(scheme)}'; write tcp://HOST:PORT (dask's default port "
                         "is 8786)")
    host, port = split_host_port(rest.rstrip("/"), what)
    fix = "start one with `dask scheduler` (and `dask worker ADDRESS`), or check the address"
    probe_tcp(host, port, what, fix, timeout)
    kind = _dask_identity(f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}", timeout)
    if kind != "Scheduler":
        raise BenchError(f"{what}: {short(host)}:{port} answers but is not a Dask scheduler ({kind}); {fix}")


def _dask_identity(address: str, timeout: float) -> str:
    """What answers at a Dask address ('Scheduler', 'Worker', ...) through Dask's own protocol, within
    `timeout`; a description of the failure when it does not speak that protocol."""
    import asyncio

    from distributed.comm import connect

    async def ask() -> Any:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    try:
        reply = asyncio.run(asyncio.wait_for(ask(), 2 * timeout))
    except TimeoutError:
        return f"no Dask reply within {2 * timeout:g} s"
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - garbage from a foreign server, a TLS mismatch...
        return f"not Dask's protocol: {type(exc).__name__}"
    return str(reply.get("type")) if isinstance(reply, dict) else "an unexpected reply"


def check_database(url_text: str, what: str, fix: str, timeout: float = TIMEOUT_S) -> None:
    """A database server URL (postgresql://, mysql://, ...): its driver is installed, the server
    answers, and (for the drivers that take a connect timeout) a login succeeds; all within `timeout`."""
    from sqlalchemy.engine import make_url

    url = make_url(url_text)
    backend = url.get_backend_name()
    try:
        url.get_dialect().import_dbapi()
    except ImportError as exc:
        hint = "pip install 'bench[postgres]'" if backend == "postgresql" else "install the database driver"
        raise BenchError(f"{what}: the {backend} driver is not installed ({short(exc, 80)}); {hint}") from None
    except Exception:  # noqa: BLE001 - a dialect without import_dbapi: leave it to the connection below
        pass
    if url.host and not url.host.startswith("/"):
        probe_tcp(url.host, url.port or DEFAULT_PORTS.get(backend, 0), what, fix, timeout)
    _login(url, what, fix, timeout)


def _login(url: Any, what: str, fix: str, timeout: float) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    driver = url.get_driver_name()
    if not any(name in driver for name in ("psycopg", "pymysql", "mysqldb", "pg8000")):
        return  # no known connect-timeout argument: the TCP probe above is the check
    key = "timeout" if "pg8000" in driver else "connect_timeout"
    engine = create_engine(url, poolclass=NullPool, connect_args={key: max(1, int(timeout))})
    try:
        with engine.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - authentication, missing database, TLS...: the user's URL
        first = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise BenchError(f"{what}: cannot log in ({short(first[0] if first else type(exc).__name__, 160)}); {fix}") \
            from None
    finally:
        engine.dispose()
