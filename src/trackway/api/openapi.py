"""The OpenAPI document, completed: collector bodies and parameters, every error, the bearer scheme.

The collector endpoints read their raw bodies themselves (``dialects/routes.py`` serves
them as plain Starlette routes), so FastAPI sees no parameters and no body on them, and it
documents no error a route raises itself. This module completes FastAPI's document once,
after it is built: the request of every collector operation as the dialects really accept
it (JSON, a form, the query string), the error answers of each operation (every error body
is ``{"detail": ...}``, the ``Error`` schema), and the bearer scheme of ``/api/*``. It lives
here, not in the dialects' route registrations, so that what is documented can be read in
one place and the dialects' parsing stays untouched.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from trackway.dialects import segment
from trackway.dialects.tracardi import TrackerPayload

_JSON: Final = "application/json"
_FORM: Final = "application/x-www-form-urlencoded"

#: Why each error status is answered; an operation lists those it can give.
ERROR_REASONS: Final[dict[int, str]] = {
    400: "The request could not be read.",
    401: "Missing or invalid credentials: the admin bearer token, or an unknown source.",
    403: "A signature that does not verify, or an Origin the source does not allow.",
    404: "Nothing has this id.",
    405: "The path does not take this method; `Allow` lists those it does.",
    408: "The body did not arrive within TRACKWAY_BODY_TIMEOUT_SECONDS.",
    409: "The id is taken.",
    413: "The body is over TRACKWAY_MAX_BODY_BYTES, or the batch over TRACKWAY_MAX_BATCH_EVENTS.",
    415: "The body is not of a media type this operation reads.",
    422: "The input parsed but is wrong; `detail` lists each problem with its `loc`.",
    429: "The source's rate limit is exceeded: retry after `Retry-After` seconds.",
    503: "The database cannot be reached, or too many connections are open: retry later.",
}

ERROR_SCHEMA: Final = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["loc", "msg", "type"],
                        "properties": {
                            "loc": {
                                "type": "array",
                                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                            },
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                },
            ]
        }
    },
}

_TEXT: Final = {"type": "string", "maxLength": 4096}


def _param(name: str, description: str, *, required: bool = False, where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description, "schema": _TEXT}


def _form(fields: dict[str, str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "schema": {
            "type": "object",
            "properties": {name: {**_TEXT, "description": text} for name, text in fields.items()},
            "required": list(required),
        }
    }


_TRACKTOR_COMMON: Final = {
    "sid": "The source id (a tracktor source).",
    "ts": "Unix seconds of the call (an integer); absent: the receive time.",
    "pixel": "1: answer with a 1x1 GIF instead of JSON.",
}
_TRACKTOR_FIELDS: Final[dict[str, dict[str, str]]] = {
    "/set": {
        **_TRACKTOR_COMMON,
        "id": "The person id (1-255 characters).",
        "sign": "Hex HMAC-SHA256 of id, keyed with the source secret (secure mode).",
        "data": "A JSON object: the person's properties (null removes one).",
    },
    "/track": {
        **_TRACKTOR_COMMON,
        "id": "The person id (1-255 characters).",
        "sign": "Hex HMAC-SHA256 of id, keyed with the source secret (secure mode).",
        "action": "The event type (1-255 characters); setCart, cancelCart and purchaseCart also "
        "change the person's cart.",
        "data": "A JSON object: the event's properties; for the cart actions, the cart object "
        "(totalprice, and products of name, price, count).",
    },
    "/alias": {
        **_TRACKTOR_COMMON,
        "srcid": "The person id merged away.",
        "destid": "The person id that stays.",
        "srcsign": "Signature of srcid (secure mode, an identified srcid).",
        "destsign": "Signature of destid (secure mode).",
    },
}
_INSEND_FIELDS: Final = {
    "app_key": "The source id (an insend source).",
    "visitor_uid": "A registered visitor's id.",
    "guest_uid": "An anonymous guest's id.",
    "data": 'A JSON string: {"type", "properties", "visitor_info", "url", ...}.',
}
_TRACIFY_BODY: Final = {
    "type": "object",
    "required": ["events"],
    "properties": {
        "events": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["url", "customer_site_id", "identity_data", "datetime", "type", "data"],
                "properties": {
                    "url": {"type": "string"},
                    "customer_site_id": {"type": "string", "maxLength": 128},
                    "identity_data": {
                        "type": "object",
                        "description": "SHA-256 hex hash: identity type 1 (email) to 4 (user agent).",
                        "additionalProperties": {"type": "integer", "enum": [1, 2, 3, 4]},
                    },
                    "datetime": {"type": "string", "description": "%Y-%m-%d %H:%M:%S, UTC."},
                    "type": {
                        "type": "string",
                        "enum": ["pageview", "productview", "addtocart", "purchase", "conversion"],
                    },
                    "data": {"type": "object", "description": "origin, order_id, currency, amount, ITEMn..."},
                },
            },
        }
    },
}
_GIF: Final = {"image/gif": {"schema": {"type": "string", "format": "binary"}}}
_SEGMENT_CALL: Final = {
    "type": "object",
    "description": "A Segment call: userId and/or anonymousId, messageId (the dedup key), "
    "timestamp / originalTimestamp / sentAt, context, integrations; track: event, properties; "
    "identify: traits; page/screen: name, category, properties; group: groupId, traits; "
    "alias: previousId, userId. At most 32 KB.",
    "properties": {
        "type": {"type": "string", "enum": list(segment.CALL_TYPES)},
        "userId": {"type": "string"},
        "anonymousId": {"type": "string"},
        "messageId": {"type": "string"},
        "event": {"type": "string"},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
        "writeKey": {"type": "string", "description": "The source id, unless sent as Basic auth."},
    },
}
_SEGMENT_BATCH: Final = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "maxItems": segment.MAX_BATCH_CALLS, "items": _SEGMENT_CALL},
        "context": {"type": "object"},
        "integrations": {"type": "object"},
        "sentAt": {"type": "string"},
        "writeKey": {"type": "string", "description": "The source id, unless sent as Basic auth."},
    },
}


def _segment(batch: bool) -> dict[str, Any]:
    schema = _SEGMENT_BATCH if batch else _SEGMENT_CALL
    return {
        "parameters": [
            _param(
                "Authorization",
                "Basic auth: the write key (a segment source's id) as user name, empty password.",
                where="header",
            ),
            _param("Content-Encoding", "gzip, or none.", where="header"),
        ],
        "requestBody": {
            "required": True,
            "description": "JSON, also as text/plain (analytics.js); gzip with Content-Encoding: gzip.",
            "content": {_JSON: {"schema": schema}, "text/plain": {"schema": {"type": "string"}}},
        },
        "errors": (400, 401, 403, 408, 413, 503),
    }


def _tracktor(path: str, method: str) -> dict[str, Any]:
    fields = _TRACKTOR_FIELDS[path]
    required = {
        "/set": ("sid", "id"),
        "/track": ("sid", "id", "action"),
        "/alias": ("sid", "srcid", "destid"),
    }
    operation: dict[str, Any] = {"success_content": {_JSON: {}, **_GIF}}
    if method == "get":
        operation["parameters"] = [_param(n, t, required=n in required[path]) for n, t in fields.items()]
        operation["errors"] = (401, 403, 413, 422, 429, 503)
    else:
        operation["requestBody"] = {"required": True, "content": {_FORM: _form(fields, required[path])}}
        operation["errors"] = (401, 403, 408, 413, 415, 422, 429, 503)
    return operation


def _collector_operations(model_schemas: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """What FastAPI cannot see of each collector operation: its request and its errors."""
    tracardi_schema = model_schemas["TrackerPayload"]
    return {
        ("/track", "post"): {
            "requestBody": {
                "required": True,
                "description": "Tracardi's tracker payload (JSON, also as text/plain from sendBeacon), or "
                "Tracktor's /track fields as a form.",
                "content": {
                    _JSON: {"schema": tracardi_schema},
                    "text/plain": {"schema": {"type": "string"}},
                    _FORM: _form(_TRACKTOR_FIELDS["/track"], ("sid", "id", "action")),
                },
            },
            "success_content": {_JSON: {}, **_GIF},
            "errors": (401, 403, 408, 413, 422, 429, 503),
        },
        ("/track", "get"): _tracktor("/track", "get"),
        ("/set", "get"): _tracktor("/set", "get"),
        ("/set", "post"): _tracktor("/set", "post"),
        ("/alias", "get"): _tracktor("/alias", "get"),
        ("/alias", "post"): _tracktor("/alias", "post"),
        ("/watch/event", "post"): {
            "parameters": [_param(n, t) for n, t in _INSEND_FIELDS.items()],
            "requestBody": {
                "required": False,
                "description": "The same fields as a form body (a form field wins over the query's).",
                "content": {_FORM: _form(_INSEND_FIELDS)},
            },
            "errors": (401, 403, 408, 413, 415, 422, 429, 503),
        },
        ("/tracify/events", "post"): {
            "parameters": [
                _param("X-API-Key", "The tracify source's secret.", required=True, where="header")
            ],
            "requestBody": {"required": True, "content": {_JSON: {"schema": _TRACIFY_BODY}}},
            "errors": (401, 403, 408, 413, 422, 429, 503),
        },
        **{(path, "post"): _segment(type_ is None) for path, type_ in segment.ROUTES},
        **{
            (path, "get"): {
                "parameters": [
                    _param("If-None-Match", "An ETag of the script held by the client.", where="header")
                ],
                "extra_responses": {"304": {"description": "The client's copy is current."}},
                "success_content": {"text/javascript": {"schema": {"type": "string"}}},
                "errors": (),
            }
            # The same script where Trackway's snippet and Tracardi's loader line ask for it.
            for path in ("/tracker", "/tracker/liliput.min.js")
        },
    }


#: Errors of the admin and read API, beyond FastAPI's 422, by operation.
_API_ERRORS: Final[dict[tuple[str, str], tuple[int, ...]]] = {
    ("/api/sources", "post"): (400, 401, 408, 409, 413, 503),
    ("/api/sources", "get"): (401, 503),
    ("/api/sources/{source_id}", "patch"): (400, 401, 404, 408, 413, 503),
    ("/api/profiles", "get"): (401, 503),
    ("/api/profiles/{profile_id}", "get"): (401, 404, 503),
    ("/api/profiles/{profile_id}/events", "get"): (401, 404, 503),
    ("/api/sessions/{session_id}", "get"): (401, 404, 503),
    ("/api/profiles/{profile_id}/sessions", "get"): (401, 404, 503),
    ("/api/people", "get"): (401, 503),
    ("/api/people/search", "post"): (400, 401, 408, 413, 503),
    ("/api/events", "get"): (401, 503),
    ("/api/segments", "post"): (400, 401, 408, 413, 503),
    ("/api/segments", "get"): (401, 503),
    ("/api/segments/preview", "post"): (400, 401, 408, 413, 503),
    ("/api/segments/{segment_id}", "get"): (401, 404, 503),
    ("/api/segments/{segment_id}", "patch"): (400, 401, 404, 408, 413, 503),
    ("/api/segments/{segment_id}", "delete"): (401, 404, 503),
    ("/api/segments/{segment_id}/people", "get"): (401, 404, 409, 503),
    ("/api/metrics/query", "post"): (400, 401, 408, 413, 503),
    ("/api/metrics", "post"): (400, 401, 408, 413, 503),
    ("/api/metrics", "get"): (401, 503),
    ("/api/metrics/{metric_id}", "get"): (401, 404, 503),
    ("/api/metrics/{metric_id}", "delete"): (401, 404, 503),
    ("/api/metrics/{metric_id}", "patch"): (400, 401, 404, 408, 413, 503),
    ("/api/funnels/query", "post"): (400, 401, 408, 413, 503),
    ("/api/funnels/query/people", "post"): (400, 401, 408, 413, 503),
    ("/api/funnels", "post"): (400, 401, 408, 413, 503),
    ("/api/funnels", "get"): (401, 503),
    ("/api/funnels/{funnel_id}", "get"): (401, 404, 503),
    ("/api/funnels/{funnel_id}", "delete"): (401, 404, 503),
    ("/api/funnels/{funnel_id}", "patch"): (400, 401, 404, 408, 413, 503),
    ("/api/funnels/{funnel_id}/people", "get"): (401, 404, 503),
    ("/api/overview", "get"): (401, 503),
    ("/api/erasures", "post"): (400, 401, 404, 408, 413, 503),
    ("/api/erasures", "get"): (401, 503),
    ("/api/erasures/{erasure_id}", "get"): (401, 404, 503),
    ("/api/suppressions", "get"): (401, 503),
    ("/api/suppressions/{suppression_id}", "delete"): (401, 404, 503),
    ("/api/profiles/{profile_id}/export", "get"): (401, 404, 503),
    ("/api/rejections", "get"): (401, 503),
    ("/api/rejections/{rejection_id}", "get"): (401, 404, 503),
    ("/api/rejections/{rejection_id}/replay", "post"): (400, 401, 404, 408, 409, 413, 503),
    ("/api/rejections/replay", "post"): (400, 401, 408, 413, 503),
    ("/readyz", "get"): (503,),
}


#: What each operation does, in the words of the people who call it: FastAPI takes a route's
#: docstring, which is written for the code's readers. Operations not listed keep theirs.
_WORDS: Final[dict[tuple[str, str], tuple[str, str]]] = {
    ("/track", "post"): (
        "Send events (Tracardi tracker payload, or a Tracktor form)",
        "The browser tracker and Tracardi integrations post here: a source id, the visitor's session "
        "and profile ids when known, and a list of events. The answer names the profile id the client "
        "keeps. A form body (`sid`, `id`, `action`, `data`) is a Tracktor call instead.",
    ),
    ("/track", "get"): (
        "Tracktor: track an event",
        "Records the event `action` for the person `id` of the source `sid`, with `data` as its "
        "properties. `setCart`, `cancelCart` and `purchaseCart` also change the person's cart.",
    ),
    ("/set", "get"): (
        "Tracktor: set a person's properties",
        "Sets the properties in `data` on the person `id`; properties not named stay, `null` removes "
        "one. An `email` also identifies the person across sources.",
    ),
    ("/alias", "get"): (
        "Tracktor: merge two people",
        "Folds the person `srcid` into `destid` (for example an anonymous visitor who signs in); the "
        "answer names the person that stays.",
    ),
    ("/watch/event", "post"): (
        "InSend: record a visitor's event",
        "InSend's JavaScript API: `app_key` names the source, `visitor_uid` a registered visitor or "
        "`guest_uid` an anonymous one, `data` the event (its `type`, properties and visitor info). "
        "Fields come in the query string or a form body.",
    ),
    ("/tracify/events", "post"): (
        "Tracify: send a batch of server-side events",
        "A backend sends page views, product views, add-to-carts, purchases and conversions with "
        "hashed identities; `X-API-Key` is the source's secret. The batch is stored whole or not at all.",
    ),
    ("/api/profiles/{profile_id}/events", "get"): (
        "A person's events",
        "The person's events, oldest first (`order=desc`: newest first), a page at a time.",
    ),
    ("/api/sessions/{session_id}", "get"): ("A visit", "One visit: its source, person, times and context."),
    ("/api/people/search", "post"): (
        "Search people",
        "The filters of `GET /api/people` as a JSON body; `size: true` also counts every match.",
    ),
    ("/api/segments", "get"): ("List segments", "Every saved segment with its condition."),
    ("/api/segments", "post"): (
        "Create a segment",
        "Save a condition under a name; its members are whoever matches.",
    ),
    ("/api/segments/{segment_id}", "get"): ("A segment", "A saved segment and its condition."),
    ("/api/segments/{segment_id}", "patch"): ("Change a segment", "Rename it or change its condition."),
    ("/api/segments/{segment_id}", "delete"): (
        "Delete a segment",
        "Deletes the segment; people are untouched.",
    ),
    ("/api/metrics", "get"): ("List metrics", "Every saved metric's definition."),
    ("/api/metrics/{metric_id}", "delete"): ("Delete a metric", "Deletes the saved metric."),
    ("/api/funnels", "get"): ("List funnels", "Every saved funnel's steps."),
    ("/api/funnels", "post"): (
        "Create a funnel",
        "Save a funnel's steps (event types, in order) under a name.",
    ),
    ("/api/funnels/{funnel_id}", "delete"): ("Delete a funnel", "Deletes the saved funnel."),
    ("/api/funnels/{funnel_id}/people", "get"): (
        "People at a funnel step",
        "The people who reached step `step` (from 1) in the range: id, email and last action.",
    ),
}
_WORDS[("/set", "post")] = _WORDS[("/set", "get")]
_WORDS[("/alias", "post")] = _WORDS[("/alias", "get")]


def _error_responses(codes: tuple[int, ...]) -> dict[str, Any]:
    return {
        str(code): {
            "description": ERROR_REASONS[code],
            "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code in codes
    }


def _lift_defs(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A pydantic model's JSON schema with its ``$defs`` moved into the document's components."""
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    return schema


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (FastAPI's) with the collector requests, every error and the bearer scheme."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    ref = "#/components/schemas/{model}"
    schemas["TrackerPayload"] = _lift_defs(TrackerPayload.model_json_schema(ref_template=ref), schemas)
    schemas["TrackerPayload"]["description"] = (
        "What Tracardi's tracker sends: the source, the visit (session) and person (profile) ids when "
        "known, page context and the events; keys Trackway does not use are accepted and ignored."
    )
    model_schemas = {"TrackerPayload": {"$ref": "#/components/schemas/TrackerPayload"}}
    collectors = _collector_operations(model_schemas)
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if (path, method) in _WORDS:
                operation["summary"], operation["description"] = _WORDS[(path, method)]
            extra = collectors.get((path, method))
            responses: dict[str, Any] = operation.setdefault("responses", {})
            if extra is not None:
                if "parameters" in extra:
                    operation["parameters"] = extra["parameters"]
                if "requestBody" in extra:
                    operation["requestBody"] = extra["requestBody"]
                if "success_content" in extra:
                    responses["200"]["content"] = {
                        media: content or {"schema": {}}
                        for media, content in extra["success_content"].items()
                    }
                responses.update(extra.get("extra_responses", {}))
                codes: tuple[int, ...] = extra["errors"]
            else:
                codes = _API_ERRORS.get((path, method), ())
            if "422" in responses:  # FastAPI's own shape; Trackway answers every error as Error
                codes = (*codes, 422)
            responses.update(_error_responses(tuple(sorted(set(codes)))))
    for unused in ("HTTPValidationError", "ValidationError"):
        if not any(unused in str(item) for item in document.get("paths", {}).values()):
            schemas.pop(unused, None)
    return document


def install(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, on the first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = complete(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
