"""``/docs``: Swagger UI over ``/openapi.json``, served from the package (works offline).

FastAPI's default page loads Swagger UI from a CDN; this one serves the files of
swagger-ui-dist vendored in ``static/swagger-ui`` (see its ``VERSION``). "Authorize" takes
the admin token for the bearer scheme of ``/api`` (``AdminToken``), and the token is kept
across reloads of the page in the browser's storage only when the user asks Swagger UI to.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
ASSETS_PATH = "/docs/assets"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Trackway API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        swagger_ui_parameters={"persistAuthorization": False, "displayRequestDuration": True},
    )


def install(app: FastAPI) -> None:
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="swagger-ui")
    app.include_router(router)
