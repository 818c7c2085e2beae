"""A real PostgreSQL server for the tests: Debian's `postgresql` package, a throwaway cluster
in a temporary folder on a free port, trust authentication on 127.0.0.1, stopped at the end.
As root (CI), the server runs as the `postgres` user that the package creates."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "apt-get install -y postgresql (.ci/run does)"


def _bin_folder() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError(f"PostgreSQL's initdb is not installed -> {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    folder: Path
    port: int
    bin: Path
    as_user: list[str]

    @classmethod
    def start(cls) -> PostgresServer:
        bin_folder = _bin_folder()
        folder = Path(tempfile.mkdtemp(prefix="pg-tests-"))
        as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            shutil.chown(folder, "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        server = cls(folder, _free_port(), bin_folder, as_user)
        server._run(
            "initdb",
            "-D",
            str(folder / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = (
            f"-p {server.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c max_connections=200"
        )
        server._run(
            "pg_ctl",
            "-D",
            str(folder / "data"),
            "-o",
            options,
            "-l",
            str(folder / "log"),
            "-w",
            "start",
        )
        return server

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [*self.as_user, str(self.bin / program), *args], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}")

    def create_database(self, name: str) -> str:
        """Create database `name`; returns its libpq connection string."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.dsn(name)

    def dsn(self, name: str) -> str:
        return f"dbname={name} host=127.0.0.1 port={self.port} user=postgres"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
