"""Configuration, read from ``TRACKWAY_*`` environment variables; the only reader of the environment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./trackway.db"
#: URL schemes accepted in ``TRACKWAY_DATABASE_URL``, and the driver each one means.
DATABASE_SCHEMES = {
    "postgres": "postgresql+asyncpg",  # what Heroku-style providers hand out
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
DATABASE_URL_EXPECTED = (
    "expected postgresql://USER:PASSWORD@HOST:5432/DATABASE (postgres:// and "
    "postgresql+asyncpg:// too) or sqlite+aiosqlite:///PATH"
)


def database_url(value: str) -> str:
    """The URL with the driver Trackway uses: ``postgres://`` and ``postgresql://`` mean asyncpg,
    ``sqlite://`` aiosqlite; libpq's ``sslmode`` becomes asyncpg's ``ssl``. Anything else is an
    error naming what is expected (``NoSuchModuleError`` or a missing psycopg said nothing useful)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    scheme, sep, rest = value.strip().partition("://")
    driver = DATABASE_SCHEMES.get(scheme.lower())
    if not sep or driver is None:
        raise ValueError(DATABASE_URL_EXPECTED)
    try:
        url = make_url(f"{driver}://{rest}")
        url.port  # noqa: B018 - a port that is not a number raises here
    except (ArgumentError, ValueError):
        raise ValueError(DATABASE_URL_EXPECTED) from None
    if driver == "postgresql+asyncpg":
        if "sslmode" in url.query and "ssl" not in url.query:
            url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": url.query["sslmode"]})
    elif not url.database:
        raise ValueError(DATABASE_URL_EXPECTED + "; the file's path is required")
    return url.render_as_string(hide_password=False)


class Settings(BaseSettings):
    """Every knob an operator can turn. Documented, with its default, in the README."""

    model_config = SettingsConfigDict(env_prefix="TRACKWAY_", extra="ignore")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    admin_token: str | None = Field(
        None, description="Bearer token of the admin and read API; unset, that API answers 401."
    )
    host: str = Field("127.0.0.1", description="Address `trackway serve` listens on.")
    port: int = Field(8686, ge=1, le=65535, description="Port `trackway serve` listens on.")
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body accepted; larger is a 413."
    )
    max_batch_events: int = Field(500, ge=1, description="Most events one request may carry; more is a 413.")
    mask_ip: bool = Field(False, description="Store client IPs masked (IPv4 /24, IPv6 /48) instead of whole.")
    session_timeout: int = Field(
        1800,
        ge=60,
        description="Seconds of silence after which a server-derived visit ends.",
    )
    source_cache_seconds: float = Field(
        5.0, ge=0, description="How long a looked-up source is cached in-process (0: never)."
    )
    db_pool_size: int = Field(10, ge=1, description="PostgreSQL connection pool size per worker.")
    db_prefer_indexes: bool = Field(
        True,
        description="Plan Trackway's PostgreSQL queries with sequential scans as the last resort "
        "(enable_seqscan=off on its own connections): every query it makes is a key lookup.",
    )
    db_pool_pre_ping: bool = Field(
        True,
        description="Check each pooled PostgreSQL connection before use (three round trips); "
        "off, a connection found dead fails its request with a 503 and the pool is renewed.",
    )
    db_wait_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="`trackway serve`: how long to wait for a PostgreSQL that cannot be reached yet "
        "at start (a compose stack starts both at once), trying again every second.",
    )
    sqlite_busy_timeout_ms: int = Field(
        10_000, ge=0, description="How long an SQLite writer waits for the lock before failing."
    )
    group_commit: bool = Field(
        True, description="Write concurrent requests' batches in shared transactions (group commit)."
    )
    group_commit_window_ms: float = Field(
        1.0, ge=0, le=100, description="How long a group waits for more requests before it is written."
    )
    group_commit_max_batches: int = Field(
        32, ge=1, le=10_000, description="Most requests' batches written in one transaction."
    )
    group_commit_in_flight: int = Field(
        4, ge=1, le=64, description="Groups written at once on PostgreSQL (SQLite: always 1)."
    )
    gc_gen0_threshold: int = Field(
        100_000,
        ge=0,
        description="Allocations between collections of the garbage collector's youngest "
        "generation while the server runs (CPython's default is 700; 0 leaves it alone).",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="`trackway serve`: a connection that has not sent a request's whole headers "
        "this long after it opened (or after its previous answer) gets a 408 and is closed.",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A request whose whole body has not arrived this long after its headers "
        "gets a 408 (and the connection is closed).",
    )
    keep_alive_timeout_seconds: int = Field(
        5, ge=1, le=300, description="`trackway serve`: an idle keep-alive connection is closed after this."
    )
    limit_concurrency: int = Field(
        1024,
        ge=1,
        description="`trackway serve`: most open connections per worker; a request over it gets a 503. "
        "Lowered to fit the process's open-file limit (ulimit -n).",
    )
    backlog: int = Field(
        2048, ge=1, description="`trackway serve`: connections the kernel queues before they are accepted."
    )
    cart_outcomes_interval: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="Seconds between the passes of the cart outcome job, which abandons carts "
        "due (every process runs it; the work is claimed in the database); 0 disables it here.",
    )
    erasure_interval: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="Seconds between the passes of the erasure job (a new erasure starts one at "
        "once in the process that took it); every process runs it, claimed in the database; 0: off here.",
    )
    retention_interval: float = Field(
        3600.0,
        ge=0,
        le=7 * 24 * 3600,
        description="Seconds between the passes of the retention job, which deletes events past "
        "their source's retention_days (claimed in the database); 0: off in this process.",
    )
    rejections_days: float = Field(
        7.0,
        gt=0,
        le=3650,
        description="Days a rejected request is kept in the quarantine (GET /api/rejections).",
    )
    rejections_per_minute: int = Field(
        60,
        ge=0,
        description="Most rejected requests kept per source and minute, in each process "
        "(a flood beyond it is counted, not kept); 0 keeps none.",
    )
    rejections_purge_interval: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="Seconds between passes of the job deleting rejections past "
        "TRACKWAY_REJECTIONS_DAYS (every process runs it, claimed in the database); 0: off here.",
    )
    bots: Literal["flag", "drop"] = Field(
        "flag",
        description="Requests from crawlers, headless browsers, monitors and bare HTTP clients: "
        'stored with "bot": true and left out of metrics, funnels and segments unless asked '
        "(flag), or answered 2xx and not stored (drop).",
    )
    public_url: str | None = Field(
        None,
        description="The address browsers reach Trackway at (https://track.example.com), for the "
        "snippet the CLI prints; unset, the listen address (a wildcard host as localhost).",
    )
    demo: bool = Field(False, description="Serve the demo page at /demo.")
    console: bool = Field(True, description="Serve the operator's console at /console.")
    console_session_hours: float = Field(
        12, gt=0, le=24 * 30, description="How long a console sign-in lasts before it asks again."
    )
    metrics: bool = Field(True, description="Serve Prometheus metrics at /metrics (no auth); off: 404.")
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        "info", description="Level of the server's log (info: one line per request)."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="`trackway serve`: every log line as a JSON object, or as text."
    )
    access_log: bool = Field(
        False,
        description="`trackway serve`: uvicorn's own access log as well (paths without query "
        "strings; client IPs masked with TRACKWAY_MASK_IP); Trackway's request line is always written.",
    )
    opentelemetry: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry spans, metrics and logs, when a provider is "
        "configured; off, each request skips the check for one.",
    )

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return database_url(value)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value.strip())
            parts.port  # noqa: B018 - a port that is not a number raises here
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected the address browsers use, http(s)://HOST[:PORT][/PATH]")
        if parts.query or parts.fragment:
            raise ValueError("expected no query string or fragment: http(s)://HOST[:PORT][/PATH]")
        return value.strip().rstrip("/")

    @field_validator("log_level", "log_format", "bots", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
