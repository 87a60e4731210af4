"""A real PostgreSQL server for tests: Debian's `postgresql` binaries, `initdb` into a temporary
folder, started on a free loopback port (its unix socket in that folder too), stopped at the end.

Use the session fixture from a test folder's conftest.py:

    from tests.postgres import postgres_url  # noqa: F401  (the fixture)

`postgres_url` is "postgresql://USER@127.0.0.1:PORT/DB" (trust authentication, no password);
`create_database(postgres_url, name)` gives a fresh database on the same server (a test that
wants an empty one). The binaries are looked up on PATH, then in /usr/lib/postgresql/*/bin;
when they are missing the fixture fails (CI installs them: .ci/run). As root, the server runs
as the `postgres` user (else `nobody`): initdb refuses root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.servers import free_port

USER = "speechmesh"
DATABASE = "speechmesh"


def postgres_bin(name: str) -> str | None:
    """The path of a PostgreSQL server program (initdb, pg_ctl, postgres), or None."""
    found = shutil.which(name)
    if found:
        return found

    def version(folder: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/([\d.]+)/bin$", folder)
        return tuple(int(p) for p in match.group(1).split(".")) if match else (0,)

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (this user) unless we are root, whom initdb refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists")


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Starts a throwaway server; yields the URL of its database DATABASE; stops it after."""
    programs = {name: postgres_bin(name) for name in ("initdb", "pg_ctl", "postgres")}
    missing = [name for name, path in programs.items() if path is None]
    if missing:
        raise RuntimeError(
            f"PostgreSQL server programs not found ({', '.join(missing)}) on PATH or in "
            "/usr/lib/postgresql/*/bin: install Debian's postgresql package "
            "(apt-get install postgresql; .ci/run does)"
        )
    user = _server_user()
    # A short path of our own (not pytest's tmp folders, which are private to root, and a
    # unix socket path must stay under ~100 characters).
    base = pathlib.Path(tempfile.mkdtemp(prefix="speechmesh-pg-"))
    data, log = base / "data", base / "server.log"
    as_user: dict = {"cwd": str(base), "env": {**os.environ, "LC_ALL": "C", "LANG": "C"}}
    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
        as_user.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        as_user["env"]["HOME"] = str(base)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, timeout=60, **as_user)

    started = False
    try:
        done = run(
            programs["initdb"],
            "-D",
            str(data),
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        if done.returncode:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        for _attempt in range(3):  # the free port may be taken before the server binds it
            port = free_port()
            options = " ".join(
                [
                    f"-p {port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-c unix_socket_directories={base}",
                    "-c max_connections=300",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                ]
            )
            done = run(
                programs["pg_ctl"], "-D", str(data), "-l", str(log), "-o", options, "-w", "start"
            )
            if done.returncode == 0:
                started = True
                break
            time.sleep(0.2)
        if not started:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start:\n{done.stdout}\n{done.stderr}\n{text}")
        server = f"postgresql://{USER}@127.0.0.1:{port}"
        yield create_database(f"{server}/postgres", DATABASE)
    finally:
        if started:
            run(programs["pg_ctl"], "-D", str(data), "stop", "-m", "immediate", "-w")
        shutil.rmtree(base, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """Creates database `name` on the server of `url` (any database there); returns its URL."""
    import psycopg

    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"not a plain database name: {name!r}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the whole session: the URL of an empty database on it."""
    server = running_postgres()
    try:
        url = server.__enter__()
    except RuntimeError as e:
        error = str(e)
    else:
        error = None
    if error is not None:
        pytest.fail(error, pytrace=False)
    try:
        yield url
    finally:
        server.__exit__(None, None, None)
