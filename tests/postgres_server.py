"""A throw-away PostgreSQL server on a loopback port, for the tests of a shared search.

The binaries come from Debian's postgresql package (/usr/lib/postgresql/<v>/bin) or from
the pgserver wheel on PyPI, which ships them; .ci/run installs one of the two. The
server refuses to run as root, so as root it runs as the postgres (or nobody) user.
Host connections need a password (scram-sha-256), so wrong credentials can be tested.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

USER, PASSWORD = "torchstarter", "s3cret-pw"


def find_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        candidates.insert(0, Path(spec.origin).parent / "pginstall" / "bin")
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in reversed(candidates):
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def missing_reason() -> str | None:
    """Why the tests cannot have a server here, or None when they can."""
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed (pip install -e '.[dev]' brings it)"
    bindir = find_bindir()
    if bindir is None:
        return ("no PostgreSQL server binaries: install Debian's postgresql package or "
                "pip install pgserver (.ci/run does)")
    prefix = _as_server_user()[0]
    try:
        subprocess.run([*prefix, str(bindir / "postgres"), "--version"], check=True,
                       capture_output=True, timeout=60, cwd="/")
    except (OSError, subprocess.SubprocessError):
        return (f"{bindir}/postgres does not run as {prefix[2] if prefix else 'this user'} "
                f"(the server refuses root; its folder must be readable by that user)")
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix to run the server's tools, and the uid/gid owning its files."""
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            user = pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"], user.pw_uid, user.pw_gid
    raise RuntimeError("running as root with neither a postgres nor a nobody user")


class PostgresServer:
    def __init__(self, root: Path):
        self.bindir = find_bindir()
        assert self.bindir is not None, missing_reason()
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.prefix, uid, gid = _as_server_user()
        if uid is not None:
            os.chown(root, uid, gid)
        os.chmod(root, 0o700)

    def _run(self, *command: str) -> None:
        subprocess.run([*self.prefix, *command], check=True, capture_output=True,
                       timeout=120, cwd=self.root)

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.prefix:
            os.chown(pwfile, os.stat(self.root).st_uid, os.stat(self.root).st_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER,
                  f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                  "-E", "UTF8", "--no-instructions")
        self.resume()

    def resume(self) -> None:
        """Start the server (again, after pause(): same port, same data)."""
        options = f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")

    def pause(self) -> None:
        """Stop the server at once, dropping every connection, as a crash or restart does."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                  "-w", "stop")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "stop")

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        import psycopg

        connection = psycopg.connect(self.url(), autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="torchstarter-pg-"))
    server = PostgresServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
