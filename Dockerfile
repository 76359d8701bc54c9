# syntax=docker/dockerfile:1
# Trackway server image: `docker build -t trackway .`, then see docker-compose.yml.

# --- builder: install trackway and its dependencies into a self-contained venv ---
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /build
# What the wheel needs: the metadata (with its readme), the package, and the migrations
# that pyproject.toml force-includes as trackway/migrations.
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
RUN pip install .

# --- final: the venv only, no build tools, run as an unprivileged user ---
FROM python:3.11-slim

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRACKWAY_HOST=0.0.0.0 \
    TRACKWAY_PORT=8686 \
    TRACKWAY_DATABASE_URL=sqlite+aiosqlite:////data/trackway.db

RUN groupadd --system --gid 10001 trackway \
    && useradd --system --uid 10001 --gid trackway --home-dir /app --create-home \
       --shell /usr/sbin/nologin trackway \
    && mkdir /data && chown trackway:trackway /data

COPY --from=builder /opt/venv /opt/venv

# Without PostgreSQL (TRACKWAY_DATABASE_URL unchanged) the data is an SQLite file on the /data
# volume: it outlives the container (docker run -v trackway-data:/data ...).
WORKDIR /app
USER trackway
VOLUME ["/data"]

EXPOSE 8686

# The port the server listens on: TRACKWAY_PORT (set it, rather than --port, to change it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TRACKWAY_PORT', '8686'), timeout=4)"]

# `serve` runs pending migrations first (pass --no-migrate to skip).
CMD ["trackway", "serve"]
