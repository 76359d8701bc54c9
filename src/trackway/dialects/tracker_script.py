"""Tracardi's browser side: ``GET /tracker`` serves the tracker script, ``snippet`` writes the snippet.

The script is also at ``/tracker/liliput.min.js``, where Tracardi's own loader line asks for it.

The snippet has seed 000's shape: the loader line first (``static/loader.js``), then
``const options = {tracker: {url: {script, api}, source: {id}}}``. The script is read once,
when this module is imported, and answered from memory with a strong ETag, so browsers and
CDNs revalidate with a 304 instead of downloading it again.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import Response

JS_MEDIA_TYPE = "application/javascript; charset=utf-8"
CACHE_CONTROL = "public, max-age=3600"


@dataclass(frozen=True, slots=True)
class StaticScript:
    """A script and its gzip form, each with its own strong ETag (they are different bytes)."""

    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str

    @classmethod
    def load(cls, name: str) -> StaticScript:
        body = files("trackway").joinpath("static", name).read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:32]
        # mtime=0: the same file always compresses to the same bytes, on every worker.
        return cls(body, gzip.compress(body, compresslevel=9, mtime=0), f'"{digest}"', f'"{digest}-gz"')


def _loader_line() -> str:
    """The loader one-liner: the last line of ``static/loader.js`` (the rest is its commentary)."""
    text = files("trackway").joinpath("static", "loader.js").read_text(encoding="utf-8")
    return text.rstrip().splitlines()[-1]


TRACKER = StaticScript.load("tracker.js")
LOADER = _loader_line()


def _js_string(value: str) -> str:
    """A single-quoted JavaScript string that is also safe inside an HTML <script> element."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("<", "\\u003c")
    return "'" + escaped.replace("\n", "\\n").replace("\r", "\\r") + "'"


def snippet(*, api_url: str, source_id: str, script_url: str | None = None) -> str:
    """The ``<script>`` a site owner pastes into the page head, in seed 000's shape."""
    api = api_url.rstrip("/")
    script = script_url or f"{api}/tracker"
    return (
        "<script>\n"
        f"{LOADER}\n"
        "const options = {\n"
        "  tracker: {\n"
        "    url: {\n"
        f"      script: {_js_string(script)},\n"
        f"      api: {_js_string(api)}\n"
        "    },\n"
        "    source: {\n"
        f"      id: {_js_string(source_id)}\n"
        "    }\n"
        "  }\n"
        "}\n"
        "</script>"
    )


def base_url(host: str, port: int) -> str:
    """The API address for a snippet from the listen address; a wildcard becomes localhost."""
    if host in ("", "0.0.0.0", "::"):
        host = "localhost"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison, a list of tags, or ``*``."""
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            q = params.strip()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False


router = APIRouter(tags=["tracardi"])


@router.get("/tracker", summary="The browser tracker script")
async def tracker_script(request: Request) -> Response:
    """Gzipped when the client accepts it (the script is shipped readable, so this matters)."""
    gzipped = _accepts_gzip(request.headers.get("accept-encoding", ""))
    etag = TRACKER.gzip_etag if gzipped else TRACKER.etag
    headers = {
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return Response(TRACKER.gzipped if gzipped else TRACKER.body, media_type=JS_MEDIA_TYPE, headers=headers)


#: Where Tracardi's own loader line looks for the tracker: ``options.tracker.url.script`` plus
#: ``/liliput.min.js`` (``http://host:8686/tracker`` asks for ``/tracker/liliput.min.js``). The
#: same script, same headers: tracker.js also speaks to Tracardi's loader (``window.tracardi``).
TRACARDI_LOADER_PATH = "/tracker/liliput.min.js"

router.add_api_route(
    TRACARDI_LOADER_PATH,
    tracker_script,
    methods=["GET"],
    summary="The browser tracker script, where Tracardi's loader line asks for it",
)
# HEAD too (monitors, CDNs), kept out of the OpenAPI document where it would repeat GET.
for _path in ("/tracker", TRACARDI_LOADER_PATH):
    router.add_api_route(_path, tracker_script, methods=["HEAD"], include_in_schema=False)
