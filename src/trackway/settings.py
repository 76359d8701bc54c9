"""Configuration, read from ``TRACKWAY_*`` environment variables; the only reader of the environment."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./trackway.db"


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
    demo: bool = Field(False, description="Serve the demo page at /demo.")
    metrics: bool = Field(True, description="Serve Prometheus metrics at /metrics (no auth); off: 404.")
    log_level: str = Field("info", description="uvicorn log level.")
    opentelemetry: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry spans, metrics and logs, when a provider is "
        "configured; off, each request skips the check for one.",
    )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
