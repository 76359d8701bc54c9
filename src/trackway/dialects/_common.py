"""What every dialect needs from the HTTP request: a bounded body, JSON, the client's metadata."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

from email_validator import EmailNotValidError, validate_email
from fastapi import Request
from pydantic import BaseModel, ValidationError

from trackway.clientip import mask_ip
from trackway.core.batch import RequestMeta
from trackway.core.values import string_problem
from trackway.errors import PayloadTooLarge, ValidationFailed

M = TypeVar("M", bound=BaseModel)


#: Where ``read_body`` leaves what it read on the request's scope, for the quarantine
#: (``dialects/quarantine.py``): a rejected request is kept with its body, and its
#: exception handler sees the scope, not the stream the body came from.
BODY_KEY = "trackway.body"
#: Set on the scope when the body was over the limit: ``BODY_KEY`` holds its first bytes at most.
BODY_TRUNCATED_KEY = "trackway.body_truncated"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with a 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        request.scope[BODY_TRUNCATED_KEY] = True
        raise PayloadTooLarge(f"Request body is over the {limit} byte limit.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            chunks.append(chunk[: len(chunk) - (size - limit)])
            request.scope[BODY_KEY] = b"".join(chunks)
            request.scope[BODY_TRUNCATED_KEY] = True
            raise PayloadTooLarge(f"Request body is over the {limit} byte limit.")
        chunks.append(chunk)
    body = b"".join(chunks)
    request.scope[BODY_KEY] = body
    return body


def parse_model(model: type[M], body: bytes) -> M:
    """Validate a JSON body into ``model``; every error becomes a 422 naming its field.

    The content type is not checked: ``navigator.sendBeacon`` posts JSON as ``text/plain``.
    """
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise ValidationFailed(pydantic_errors(exc, prefix=("body",))) from None


def pydantic_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = [*prefix, *error["loc"]]
        msg = error["msg"]
        if error["type"] == "model_type" and len(loc) == len(prefix):
            msg = "The body must be a JSON object."
        errors.append({"loc": loc, "msg": msg, "type": error["type"]})
    return errors


def request_meta(request: Request, *, masked: bool) -> RequestMeta:
    ip = request.client.host if request.client else None
    if ip and masked:
        ip = mask_ip(ip)
    headers = request.headers
    return RequestMeta(
        received_at=datetime.now(UTC),
        user_agent=headers.get("user-agent"),
        ip=ip,
        referer=headers.get("referer"),
        origin=headers.get("origin"),
    )


def as_utc(value: datetime | None) -> datetime | None:
    """Naive times from clients are taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, merging nested objects instead of replacing them."""
    if not base:
        return over
    if not over:
        return base
    merged = dict(base)
    for key, value in over.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


#: Where a url-encoded field came from, for the ``loc`` of a 422.
Where = Literal["query", "body"]


def urlencoded_fields(raw: bytes, where: Where, max_fields: int) -> list[tuple[str, str]]:
    """Fields of a query string or form body; bytes that are not UTF-8 are a 422, not mojibake."""
    try:
        return parse_qsl(
            raw.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=max_fields
        )
    except UnicodeDecodeError:
        raise ValidationFailed.field((where,), "The fields must be UTF-8 (percent-encoded).") from None
    except ValueError:
        raise ValidationFailed.field((where,), f"More than {max_fields} fields.") from None


def media_type(request: Request) -> str:
    """The request's content type without parameters, lower-cased (``application/json``)."""
    return media_type_of(request.headers.get("content-type", ""))


def media_type_of(content_type: str) -> str:
    """A ``Content-Type`` value without parameters, lower-cased."""
    return content_type.partition(";")[0].strip().lower()


def url_parameters(url: str, prefixes: tuple[str, ...]) -> dict[str, str]:
    """The query parameters of a client's URL whose names start with one of ``prefixes`` (UTM tags).

    The URL is the client's string and is stored as sent; only this reading of it is lenient:
    a URL that does not split (``http://[x/``) has no parameters, and a parameter that decodes
    to something no database can store (``%00``) is left out rather than failing the request.
    """
    try:
        query = urlsplit(url).query
    except ValueError:
        return {}
    return {
        key: value
        for key, value in parse_qsl(query)
        if key.startswith(prefixes) and string_problem(key) is None and string_problem(value) is None
    }


def email_address(value: Any) -> str | None:
    """An email trait worth the global email identity: a string that is an address (spaces
    around it forgiven). Typed junk (``"n/a"``) must not join everyone who typed it: it stays a
    trait only. Used by the dialects whose traits are free-form (Segment, Tracardi's identify)."""
    if not isinstance(value, str):
        return None
    try:
        validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    return value
