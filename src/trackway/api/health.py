"""Liveness and readiness probes for orchestrators (docker-compose, Kubernetes)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import text

from trackway.errors import StorageUnavailable
from trackway.responses import json_response
from trackway.services import Services

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Response:
    """The process is up."""
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(services: Services) -> Response:
    """The database answers: a load balancer may send traffic."""
    try:
        async with services.uow.read() as db:
            await db.execute(text("SELECT 1"))
    except Exception as exc:
        raise StorageUnavailable("Database unreachable.") from exc
    return json_response({"status": "ready", "database": services.uow.dialect})
