"""``GET /metrics``: the app's Prometheus registry in the text exposition format.

No bearer token: Prometheus scrapers expect an open endpoint, and it shows counts and
latencies, never data. Operators who do not want it exposed set ``TRACKWAY_METRICS=false``
(then it answers 404) or keep the path off their public proxy.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.exposition import choose_encoder

from trackway.errors import NotFound
from trackway.metrics import metrics_of, scrape_registry
from trackway.services import Services

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, services: Services) -> Response:
    """Render the server's metrics: with several workers, all of theirs (multiprocess mode)."""
    if not services.settings.metrics:
        raise NotFound()
    # An OpenMetrics scraper asks for it in Accept; everyone else gets the classic text format.
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(scrape_registry(metrics_of(request.app))), media_type=content_type)
