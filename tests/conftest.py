"""Options and shared servers for the cross-package tests.

The durable-store tests use real PostgreSQL and Redis servers (see ``.ci/run``'s services step): a
fixture takes ``PENGUIFLOW_TEST_POSTGRES_URL`` / ``PENGUIFLOW_TEST_REDIS_URL`` when set, else starts
its own server on loopback the way ``.ci/run`` does, else skips saying what to install -- except
under ``CI=true``, where a missing server fails the run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Generator, Iterator

import pytest


def _missing(what: str, install: str) -> None:
    message = f"{what} is not available: {install}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Generator[str]:
    """A Redis URL: the environment's, or a server started on a temporary unix socket."""
    url = os.environ.get("PENGUIFLOW_TEST_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server", "apt-get install redis-server (or set PENGUIFLOW_TEST_REDIS_URL)")
        return
    with tempfile.TemporaryDirectory() as work:
        sock = os.path.join(work, "redis.sock")
        pidfile = os.path.join(work, "redis.pid")
        subprocess.run(
            [binary, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700", "--save", "",
             "--appendonly", "no", "--daemonize", "yes", "--pidfile", pidfile, "--dir", work],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            yield f"unix://{sock}"
        finally:
            with contextlib.suppress(OSError, ValueError):
                with open(pidfile) as pid:
                    os.kill(int(pid.read()), 15)


@contextlib.contextmanager
def postgres_server() -> Generator[str]:
    """A PostgreSQL URL: the environment's, or a cluster started on 127.0.0.1 (as root)."""
    url = os.environ.get("PENGUIFLOW_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdbs or os.geteuid() != 0 or shutil.which("runuser") is None:
        _missing(
            "PostgreSQL",
            "apt-get install postgresql and run as root, or set PENGUIFLOW_TEST_POSTGRES_URL",
        )
        return
    bin_dir = os.path.dirname(initdbs[-1])
    work = tempfile.mkdtemp()
    os.chmod(work, 0o755)
    data = os.path.join(work, "pg")
    os.mkdir(data)
    shutil.chown(data, "postgres")
    port = _free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"]
    try:
        subprocess.run(
            [*as_postgres, f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "-A", "trust",
             "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
        subprocess.run(
            [*as_postgres, f"{bin_dir}/pg_ctl", "-D", data, "-l", f"{data}/log", "-w", "-o",
             options, "start"],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_postgres, f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server's URL (see ``servers.py``)."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis server's URL (see ``servers.py``)."""
    with redis_server() as url:
        yield url


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-traces",
        type=int,
        default=20_000,
        help="traces pushed through the soak test (CI uses the default; try 100000)",
    )
