"""The container files agree with the code: docker-compose.yml, Dockerfile and .dockerignore.

No Docker engine is needed: the files are parsed and checked against the CLI parser and the settings.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from trackway.cli import build_parser
from trackway.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_VARIABLE = re.compile(r"^\$\{(?P<name>[A-Z_][A-Z0-9_]*):?\?[^}]*\}$")


# --- docker-compose.yml ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, in either the mapping or the ``NAME=value`` list form."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return {str(name): None if value is None else str(value) for name, value in raw.items()}


def serve_args(command: Any) -> Any:
    if isinstance(command, str):
        command = shlex.split(command)
    assert isinstance(command, list) and command, command
    assert command[0] == "trackway", command
    return build_parser().parse_args([str(part) for part in command[1:]])


def test_services_exist(services: dict[str, Any]) -> None:
    assert {"postgres", "trackway"} <= set(services)


def test_postgres_has_credentials_healthcheck_and_named_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    postgres = services["postgres"]
    assert str(postgres["image"]).startswith("postgres:")
    env = environment(postgres)
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert env.get(name), name

    test = postgres["healthcheck"]["test"]
    assert "pg_isready" in (test if isinstance(test, str) else " ".join(test))

    named = set(compose.get("volumes") or {})
    mounts = [str(volume).split(":") for volume in postgres["volumes"]]
    data = [mount for mount in mounts if len(mount) >= 2 and mount[1] == "/var/lib/postgresql/data"]
    assert data, mounts
    assert data[0][0] in named, f"{data[0][0]!r} is not a named volume of {sorted(named)}"


def test_trackway_waits_for_healthy_postgres(services: dict[str, Any]) -> None:
    trackway = services["trackway"]
    assert trackway["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert trackway.get("build"), "the trackway service builds the image from this repository"


def test_trackway_environment_names_are_settings(services: dict[str, Any]) -> None:
    env = environment(services["trackway"])
    names = [name for name in env if name.startswith("TRACKWAY_")]
    assert names
    unknown = [name for name in names if name.removeprefix("TRACKWAY_").lower() not in Settings.model_fields]
    assert not unknown, f"not fields of trackway.settings.Settings: {unknown}"


def test_trackway_environment_values_validate(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(services["trackway"])
    token = env.get("TRACKWAY_ADMIN_TOKEN")
    assert token, "TRACKWAY_ADMIN_TOKEN must be set"
    match = REQUIRED_VARIABLE.match(token)
    assert match and match["name"] == "TRACKWAY_ADMIN_TOKEN", f"not a required variable: {token!r}"

    for name, value in env.items():
        if name.startswith("TRACKWAY_") and name != "TRACKWAY_ADMIN_TOKEN" and value is not None:
            monkeypatch.setenv(name, value)
    settings = Settings()

    url = urlsplit(settings.database_url)
    assert url.scheme == "postgresql+asyncpg"
    assert url.hostname == "postgres"
    assert url.port in (None, 5432)
    postgres = environment(services["postgres"])
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == postgres["POSTGRES_DB"]
    assert settings.host == "0.0.0.0"


def test_trackway_command_serves_with_migrations(services: dict[str, Any]) -> None:
    args = serve_args(services["trackway"]["command"])
    assert args.command == "serve"
    assert args.no_migrate is False
    assert args.host in (None, "0.0.0.0")


def test_published_port_is_the_served_port(services: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    trackway = services["trackway"]
    args = serve_args(trackway["command"])
    env = environment(trackway)
    if env.get("TRACKWAY_PORT") is not None:
        monkeypatch.setenv("TRACKWAY_PORT", env["TRACKWAY_PORT"])
    else:
        monkeypatch.delenv("TRACKWAY_PORT", raising=False)
    served = args.port if args.port is not None else Settings().port
    assert served == Settings().port == 8686

    published = []
    for port in trackway["ports"]:
        if isinstance(port, dict):
            published.append((int(port["published"]), int(port["target"])))
        else:
            *host, container = str(port).split("/")[0].split(":")
            published.append((int(host[-1]) if host else int(container), int(container)))
    assert (served, served) in published, published


# --- Dockerfile -----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends in a line continuation"
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            found.append([])
        assert found, "the Dockerfile must start with FROM"
        found[-1].append((keyword, rest))
    return found


def test_the_healthcheck_follows_trackway_port(tmp_path: Path) -> None:
    """The Dockerfile's HEALTHCHECK command, run against a real server on a port that is not 8686."""
    import os
    import socket
    import subprocess
    import sys
    import time

    healthcheck = last(stages()[-1], "HEALTHCHECK")
    assert healthcheck is not None
    check = exec_form(healthcheck.split(" CMD ", 1)[1])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRACKWAY_")},
        "TRACKWAY_PORT": str(port),
        "TRACKWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
        "TRACKWAY_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "trackway"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        result = None
        while time.monotonic() < deadline:
            result = subprocess.run([sys.executable, *check[1:]], env=env, capture_output=True, timeout=10)
            if result.returncode == 0:
                break
            time.sleep(0.2)
        assert result is not None and result.returncode == 0, result.stderr if result else None
        elsewhere = subprocess.run(
            [sys.executable, *check[1:]], env={**env, "TRACKWAY_PORT": "1"}, capture_output=True, timeout=10
        )
        assert elsewhere.returncode != 0  # it checks that port, not a fixed one
    finally:
        server.terminate()
        server.wait(timeout=20)


def exec_form(rest: str) -> list[str]:
    """A CMD/ENTRYPOINT/HEALTHCHECK CMD argument list, JSON (exec) form or shell form."""
    if rest.startswith("["):
        value = json.loads(rest)
        assert isinstance(value, list) and all(isinstance(part, str) for part in value)
        return value
    return shlex.split(rest)


def last(stage: list[tuple[str, str]], keyword: str) -> str | None:
    values = [rest for name, rest in stage if name == keyword]
    return values[-1] if values else None


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    found = stages()
    assert len(found) >= 2
    for stage in found:
        assert stage[0][1].split()[0] == "python:3.11-slim", stage[0]
    builder = found[0][0][1].split()
    assert len(builder) == 3 and builder[1].upper() == "AS", "the builder stage is named"
    final = found[-1]
    copies = [rest for name, rest in final if name == "COPY"]
    assert any(f"--from={builder[2]}" in rest and "/opt/venv" in rest for rest in copies), copies
    # Building happens in the builder: the final stage installs nothing.
    for name, rest in final:
        if name == "RUN":
            assert not re.search(r"\b(pip|apt-get|apt|gcc|build-essential)\b", rest), rest


def test_dockerfile_builder_copies_what_the_wheel_needs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    needed |= {package.split("/")[0] for package in wheel.get("packages", [])}
    needed |= set(wheel.get("force-include", {}))

    builder = stages()[0]
    copied = set()
    for name, rest in builder:
        if name == "COPY" and "--from" not in rest:
            copied |= set(shlex.split(rest)[:-1])
    assert needed <= copied, f"the builder does not copy {sorted(needed - copied)}"
    assert any(name == "RUN" and re.search(r"pip install \.(\s|$)", rest) for name, rest in builder)


def test_dockerfile_final_stage_runs_unprivileged_server() -> None:
    final = stages()[-1]

    user = last(final, "USER")
    assert user, "the final stage sets USER"
    assert user.split(":")[0] not in ("root", "0")

    exposed = [port.split("/")[0] for name, rest in final if name == "EXPOSE" for port in rest.split()]
    assert "8686" in exposed

    env: dict[str, str] = {}
    for name, rest in final:
        if name == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(rest) if "=" in part)
    assert env.get("TRACKWAY_HOST") == "0.0.0.0"
    assert env.get("TRACKWAY_PORT") == "8686"
    unknown = [
        key
        for key in env
        if key.startswith("TRACKWAY_") and key.removeprefix("TRACKWAY_").lower() not in Settings.model_fields
    ]
    assert not unknown

    healthcheck = last(final, "HEALTHCHECK")
    assert healthcheck and healthcheck.upper() != "NONE"
    check = exec_form(healthcheck.split(" CMD ", 1)[1] if " CMD " in healthcheck else healthcheck[4:])
    assert check[0].startswith("python")
    # The health check follows TRACKWAY_PORT: run it against a server on another port.
    assert check[1] == "-c" and "TRACKWAY_PORT" in check[2]
    assert "/data" in [path for name, rest in final if name == "VOLUME" for path in exec_form(rest)]
    assert env.get("TRACKWAY_DATABASE_URL", "").startswith("sqlite+aiosqlite:////data/")

    entrypoint = exec_form(last(final, "ENTRYPOINT") or "[]")
    command = entrypoint + exec_form(last(final, "CMD") or "[]")
    args = serve_args(command)
    assert args.command == "serve"
    assert args.no_migrate is False


# --- .dockerignore --------------------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Roughly Docker's rules: the last matching pattern wins; a match on a parent directory counts."""
    parts = path.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.removeprefix("!").strip("/")
        bodies = {body, body.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(candidate, glob) for candidate in candidates for glob in bodies):
            result = not negate
    return result


def test_dockerignore_excludes_local_state() -> None:
    patterns = dockerignore_patterns()
    for path in (".venv", ".venv/bin/python", ".git", "trackway.db", "trackway.db-wal"):
        assert ignored(path, patterns), f"{path} is sent to the Docker build"


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = dockerignore_patterns()
    for stage in stages():
        for name, rest in stage:
            if name == "COPY" and "--from" not in rest:
                for source in shlex.split(rest)[:-1]:
                    assert (ROOT / source).exists(), source
                    assert not ignored(source, patterns), f"{source} is copied but .dockerignore drops it"
