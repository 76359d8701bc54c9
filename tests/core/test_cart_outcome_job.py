"""The cart outcome job as the app runs it: a pass every ``cart_outcomes_interval`` seconds in
the lifespan, stopped with it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import select

from trackway.core import sources as source_service
from trackway.db.models import events


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"cart_outcomes_interval": 0.1}


async def test_the_lifespan_abandons_idle_carts_on_its_own(client, uow) -> None:
    await source_service.create_source(
        uow, name="app", dialect="tracktor", source_id="shop", cart_abandon_after=1
    )
    data = '{"products": [{"name": "Tea", "price": 2}]}'
    response = await client.get(
        "/track", params={"sid": "shop", "id": "p", "action": "setCart", "data": data}
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 10
    found: list[Any] = []
    while time.monotonic() < deadline and not found:
        await asyncio.sleep(0.1)
        async with uow.read() as db:
            found = (await db.execute(select(events.c.type).where(events.c.type == "cart-abandoned"))).all()
    assert len(found) == 1
    await asyncio.sleep(0.5)  # more passes: nothing more
    async with uow.read() as db:
        assert len((await db.execute(select(events.c.id).where(events.c.type.like("cart-%")))).all()) == 1
