"""The long-lived parts a request needs, built once in the app's lifespan and handed to routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from trackway.core.ingest import Writer
from trackway.core.sources import SourceDirectory
from trackway.db.uow import SqlUnitOfWork
from trackway.settings import Settings


@dataclass(slots=True)
class AppServices:
    settings: Settings
    engine: AsyncEngine
    uow: SqlUnitOfWork
    sources: SourceDirectory
    #: Where requests' batches go: group commit, or a transaction per request.
    writer: Writer


async def _services(request: Request) -> AppServices:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in a thread, per request."""
    services: AppServices = request.app.state.services
    return services


Services = Annotated[AppServices, Depends(_services)]


def services_of(request: Request) -> AppServices:
    """The services, for the collector routes: they take no FastAPI dependencies (``dialects/routes.py``)."""
    services: AppServices = request.app.state.services
    return services
