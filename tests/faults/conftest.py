"""Databases the fault tests may break: a SQLite file, a throwaway PostgreSQL database, a throwaway cluster.

The PostgreSQL outage test stops and starts a server. It never touches the shared one on
5432: it makes its own cluster with ``initdb`` in a temporary directory, on a free port,
and removes it afterwards whatever happened.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import free_port, scratch_pg_database, skip_or_fail


@pytest.fixture(params=["sqlite", "postgresql"])
def fault_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind that this test alone uses (the server migrates it).

    PostgreSQL: a database of its own next to ``TRACKWAY_TEST_DATABASE_URL``'s, dropped with
    ``FORCE`` at the end, so connections a killed server left behind cannot keep it.
    """
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'faults.db'}"
        return
    # A skip, not a warning, when it is unreachable: the suite turns warnings into errors.
    with scratch_pg_database("trackway_faults", "PostgreSQL fault tests") as url:
        yield url


def _postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout), else ``initdb`` on PATH."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (d for d in root.glob("*") if (d / "bin" / "initdb").exists() and d.name.isdigit()),
        key=lambda d: int(d.name),
    )
    if versions:
        return versions[-1] / "bin"
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class Cluster:
    """A PostgreSQL cluster in a temporary directory, on a free port of 127.0.0.1, trust auth.

    PostgreSQL refuses to run as root, so as root every command runs as the ``postgres``
    OS user (``runuser``) in a directory it owns.
    """

    def __init__(self, bin_dir: Path, as_user: list[str]) -> None:
        self.bin_dir = bin_dir
        self.as_user = as_user
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="trackway-faults-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [*self.as_user, str(self.bin_dir / args[0]), *args[1:]]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n{log}"
            )

    def init(self) -> None:
        if self.as_user:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        """Start and wait (``-w``) until it accepts connections."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=100"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def remove(self) -> None:
        """Stop it however it is (``immediate``: no waiting for anyone) and delete every file."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A started throwaway cluster, always stopped and deleted afterwards, even on failure."""
    bin_dir = _postgres_bin()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        skip_or_fail("initdb/pg_ctl not found (apt-get install postgresql): the PostgreSQL outage test")
    assert bin_dir is not None
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            skip_or_fail("running as root without runuser or a postgres user: the PostgreSQL outage test")
        as_user = [str(runuser), "-u", "postgres", "--"]
    made = Cluster(bin_dir, as_user)
    try:
        made.init()
        made.start()
        yield made
    finally:
        made.remove()
