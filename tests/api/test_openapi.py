"""The OpenAPI document describes what the server really takes and answers (schemathesis relies on it)."""

from __future__ import annotations

from tests.api.test_collector_routes import COLLECTOR_OPERATIONS
from trackway.app import create_app
from trackway.settings import Settings


def document() -> dict:
    return create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()


def test_every_collector_operation_documents_its_request() -> None:
    paths = document()["paths"]
    for path, method in COLLECTOR_OPERATIONS - {("/tracker", "get")}:
        operation = paths[path][method]
        assert operation.get("requestBody") or operation.get("parameters"), (path, method)
    assert set(paths["/track"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
    }
    tracktor = {p["name"] for p in paths["/set"]["get"]["parameters"]}
    assert {"sid", "id", "data", "sign", "ts"} <= tracktor
    assert paths["/tracify/events"]["post"]["parameters"][0]["name"] == "X-API-Key"


def test_every_error_is_documented_with_the_shared_error_schema() -> None:
    spec = document()
    assert spec["components"]["schemas"]["Error"]["required"] == ["detail"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
    errors = {
        (path, method): {s for s in op["responses"] if int(s) >= 400}
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }
    assert errors[("/track", "post")] >= {"401", "403", "408", "413", "422", "503"}
    assert errors[("/watch/event", "post")] >= {"415"}
    assert errors[("/api/sources", "post")] >= {"401", "409", "422"}
    assert errors[("/api/profiles/{profile_id}", "get")] >= {"401", "404", "422"}


def test_the_admin_api_declares_the_bearer_scheme() -> None:
    spec = document()
    assert spec["components"]["securitySchemes"]["AdminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "TRACKWAY_ADMIN_TOKEN",
    }
    for path, item in spec["paths"].items():
        for operation in item.values():
            secured = operation.get("security") == [{"AdminToken": []}]
            assert secured == path.startswith("/api/"), path
