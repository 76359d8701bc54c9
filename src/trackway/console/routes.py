"""The console's pages: one handler per page, each filling one template with what ``/api`` says.

Reading a page: its handler here (which API calls it makes), then its template in
``templates/`` (what it shows). Every page needs a signed session cookie (``auth.py``);
every POST needs the session's CSRF token too, and answers a redirect (or, when it shows
something only once, such as a new source's secret, the page itself).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.staticfiles import StaticFiles

from trackway import jsonutil
from trackway.console import auth, charts, forms
from trackway.console.client import Answer, ApiClient
from trackway.dialects import tracker_script
from trackway.dialects._common import read_body

HERE = Path(__file__).parent
PREFIX = "/console"

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["json"] = lambda value: jsonutil.dumps_str(value)
templates.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
templates.filters["q"] = lambda value: quote(str(value), safe="")
templates.globals.update(
    PROPERTY_OPS=forms.PROPERTY_OPS,
    EVENT_OPS=forms.EVENT_OPS,
    METRIC_TYPES=forms.METRIC_TYPES,
    RANGES=forms.RANGES,
)

#: No script, style or image from anywhere but here; the console cannot be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def mount_static(app: Any) -> None:
    """The console's CSS and JavaScript, from the package."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")


# ---------------------------------------------------------------------------------- plumbing


def _settings(request: Request) -> Any:
    return request.app.state.services.settings


def _session(request: Request) -> str | None:
    value = request.cookies.get(auth.SESSION_COOKIE)
    return value if auth.session_valid(value, _settings(request).admin_token) else None


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session = _session(request)
    token = _settings(request).admin_token
    html = templates.get_template(template).render(
        request=request,
        path=request.url.path,
        signed_in=session is not None,
        csrf=auth.csrf_token(session, token) if session and token else "",
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/sign-in?next={quote(target, safe='')}", status_code=303)


def _guard(request: Request) -> Response | None:
    """``None`` when the request may see the console; else the answer it gets instead."""
    if not _settings(request).admin_token:
        return render(request, "setup.html", status=503)
    if _session(request) is None:
        return _sign_in_redirect(request)
    return None


async def _post_form(request: Request) -> forms.Form | Response:
    """The form of a POST from a signed-in browser with the right CSRF token, or a 403."""
    token = _settings(request).admin_token
    session = _session(request)
    if not token or session is None:
        return render(request, "error.html", status=403, problems=["Sign in first: no valid session."])
    form = forms.Form(await read_body(request, _settings(request).max_body_bytes))
    if not auth.csrf_valid(form.get("csrf"), session, token):
        return render(
            request,
            "error.html",
            status=403,
            problems=["The form's CSRF token is missing or wrong: reload the page."],
        )
    return form


def _back(path: str, **params: Any) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)


def _failed(request: Request, answer: Answer) -> HTMLResponse:
    """The API's refusal as a page: its own status for what the browser asked wrong (a 404, a
    422 on a cursor or a date) or a database that is down (503); 502 for anything else."""
    status = answer.status if 400 <= answer.status < 500 or answer.status == 503 else 502
    return render(request, "error.html", status=status, problems=answer.problems())


def _today() -> Any:
    return datetime.now(UTC).date()


# ---------------------------------------------------------------------------------- sign-in


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "") -> Response:
    if not _settings(request).admin_token:
        return render(request, "setup.html", status=503)
    # Double submit: this cookie, and the same in the form. A browser that has one keeps it, so
    # the sign-in page open in two tabs works in both.
    nonce = request.cookies.get(auth.SIGNIN_COOKIE, "")
    if not re.fullmatch(r"[A-Za-z0-9_-]{32}", nonce):
        nonce = secrets.token_urlsafe(24)
    response = render(request, "signin.html", next=next, signin_csrf=nonce, problems=[])
    auth.set_cookie(response, request, auth.SIGNIN_COOKIE, nonce, 600)
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    token = _settings(request).admin_token
    if not token:
        return render(request, "setup.html", status=503)
    form = forms.Form(await read_body(request, _settings(request).max_body_bytes))
    cookie = request.cookies.get(auth.SIGNIN_COOKIE, "")
    given = form.get("csrf")
    if not cookie or not given or not hmac.compare_digest(cookie, given):
        return render(
            request,
            "error.html",
            status=403,
            problems=["The sign-in form expired or was not sent from here: reload it."],
        )
    target = form.get("next")
    if not target.startswith(f"{PREFIX}/") and target != PREFIX:
        target = PREFIX
    if not auth.token_matches(form.get("token"), token):
        response = render(
            request,
            "signin.html",
            status=401,
            next=target,
            signin_csrf=cookie,
            problems=["That token is not the admin token."],
        )
        return response
    lifetime = int(_settings(request).console_session_hours * 3600)
    response = RedirectResponse(target, status_code=303)
    auth.set_cookie(response, request, auth.SESSION_COOKIE, auth.new_session(token, lifetime), lifetime)
    auth.clear_cookie(response, request, auth.SIGNIN_COOKIE)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    form = await _post_form(request)
    if isinstance(form, Response):
        return form
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    auth.clear_cookie(response, request, auth.SESSION_COOKIE)
    return response


# ---------------------------------------------------------------------------------- overview


def _hour_labels(start: str, step: int, count: int) -> list[str]:
    first = datetime.fromisoformat(start)
    return [(first.fromtimestamp(first.timestamp() + step * i, UTC)).strftime("%H:%M") for i in range(count)]


@router.get("")
async def overview(request: Request) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    api = ApiClient(request)
    answer, tail = await asyncio.gather(api.get("/api/overview"), api.get("/api/events", limit=20))
    if not answer.ok:
        return _failed(request, answer)
    data = answer.body
    hour, day = data["last_hour"], data["last_day"]

    def chart(window: dict[str, Any], count: int, label: str) -> Any:
        labels = _hour_labels(window["start"], window["step_seconds"], count)
        series = [(f"{s['name']} ({s['dialect']})", s["counts"]) for s in window["series"]]
        return charts.stacked_bars(labels, series, label=label)

    return render(
        request,
        "overview.html",
        data=data,
        minute_chart=chart(hour, 60, "Events per minute, last hour"),
        hour_chart=chart(day, 24, "Events per hour, last 24 hours"),
        palette=charts.PALETTE,
        tail=tail.body["items"] if tail.ok else [],
    )


@router.get("/tail")
async def tail(request: Request) -> Response:
    """The newest events as an HTML fragment: what the overview's live tail reloads."""
    if not _settings(request).admin_token or _session(request) is None:
        return HTMLResponse("", status_code=401, headers=SECURITY_HEADERS)
    answer = await ApiClient(request).get("/api/events", limit=20)
    if not answer.ok:
        return HTMLResponse("", status_code=502, headers=SECURITY_HEADERS)
    return render(request, "_tail.html", tail=answer.body["items"])


# ---------------------------------------------------------------------------------- sources


def _snippet(request: Request, source: dict[str, Any]) -> str:
    base = str(request.base_url).rstrip("/")
    if auth.is_https(request) and base.startswith("http://"):  # behind a proxy that ends TLS
        base = "https://" + base.removeprefix("http://")
    if source["dialect"] == "tracardi":
        return tracker_script.snippet(api_url=base, source_id=source["id"])
    if source["dialect"] == "tracktor":
        return f"curl '{base}/track?sid={source['id']}&id=PERSON_ID&action=page-view'"
    if source["dialect"] == "insend":
        return (
            f"curl -X POST '{base}/watch/event' --data-urlencode 'app_key={source['id']}' "
            "--data-urlencode 'guest_uid=GUEST' --data-urlencode 'data={\"type\": \"link\"}'"
        )
    return (
        f"curl -X POST '{base}/tracify/events' -H 'X-API-Key: THE_SECRET' "
        "-H 'Content-Type: application/json' "
        f'-d \'{{"events": [{{"customer_site_id": "{source["id"]}", ...}}]}}\''
    )


async def _sources_page(request: Request, status: int = 200, **extra: Any) -> Response:
    answer = await ApiClient(request).get("/api/sources")
    if not answer.ok:
        return _failed(request, answer)
    return render(request, "sources.html", status=status, sources=answer.body["items"], **extra)


@router.get("/sources")
async def sources_page(request: Request) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    return await _sources_page(request)


def _origins(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


@router.post("/sources")
async def create_source(request: Request) -> Response:
    form = await _post_form(request)
    if isinstance(form, Response):
        return form
    body: dict[str, Any] = {
        "name": form.get("name"),
        "dialect": form.get("dialect"),
        "allowed_origins": _origins(form.get("origins")),
        "signed_only": form.get("signed_only") == "on",
    }
    if form.get("id"):
        body["id"] = form.get("id")
    if form.get("secret"):
        body["secret"] = form.get("secret")
    answer = await ApiClient(request).post("/api/sources", body)
    if not answer.ok:
        return await _sources_page(request, status=answer.status, problems=answer.problems(), draft=body)
    created = answer.body
    return await _sources_page(request, created=created, snippet=_snippet(request, created))


@router.post("/sources/{source_id}")
async def update_source(request: Request, source_id: str) -> Response:
    form = await _post_form(request)
    if isinstance(form, Response):
        return form
    action = form.get("action")
    body: dict[str, Any]
    if action in ("enable", "disable"):
        body = {"enabled": action == "enable"}
    elif action == "origins":
        body = {"allowed_origins": _origins(form.get("origins"))}
    elif action == "signed_only":
        body = {"signed_only": form.get("signed_only") == "on"}
    elif action == "rotate_secret":
        body = {"rotate_secret": True}
    elif action == "remove_secret":
        body = {"secret": None}
    else:
        return render(request, "error.html", status=400, problems=[f"unknown action {action!r}"])
    answer = await ApiClient(request).patch(f"/api/sources/{quote(source_id, safe='')}", body)
    if not answer.ok:
        return await _sources_page(request, status=answer.status, problems=answer.problems())
    if "secret" in answer.body:
        return await _sources_page(request, rotated=answer.body)
    return _back(f"{PREFIX}/sources")


# ---------------------------------------------------------------------------------- people


@router.get("/people")
async def people(request: Request) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    q = dict(request.query_params)
    params: dict[str, Any] = {"limit": 50, "cursor": q.get("cursor")}
    email, identity = q.get("email", "").strip(), q.get("identity", "").strip()
    if email:
        params["identity"] = f"email:{email}"
    elif identity:
        params["identity"] = identity
    if q.get("trait", "").strip():
        op = q.get("op", "eq")
        leaf: dict[str, Any] = {"property": q["trait"].strip(), "op": op}
        if op not in ("exists", "not_exists"):
            leaf["value"] = forms.typed(q.get("value", ""))
        params["where"] = jsonutil.dumps_str(leaf)
    for bound in ("last_seen_after", "last_seen_before"):
        if q.get(bound):
            params[bound] = q[bound]
    if q.get("source"):
        params["source"] = q["source"]
    api = ApiClient(request)
    answer, sources = await asyncio.gather(api.get("/api/people", **params), api.get("/api/sources"))
    problems = answer.problems()
    found = answer.body["items"] if answer.ok else []
    next_query = ""
    if answer.ok and answer.body["next_cursor"]:
        next_query = urlencode(
            {**{k: v for k, v in q.items() if k != "cursor"}, "cursor": answer.body["next_cursor"]}
        )
    return render(
        request,
        "people.html",
        status=answer.status if not answer.ok else 200,
        q=q,
        people=found,
        problems=problems,
        next_query=next_query,
        sources=sources.body["items"] if sources.ok else [],
    )


@router.get("/people/{profile_id}")
async def person(request: Request, profile_id: str) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    api = ApiClient(request)
    pid = quote(profile_id, safe="")
    cursor = request.query_params.get("cursor")
    # Three independent reads, at once: each is one API call on its own connection.
    profile, events, visits = await asyncio.gather(
        api.get(f"/api/profiles/{pid}"),
        api.get(f"/api/profiles/{pid}/events", order="desc", limit=25, cursor=cursor),
        api.get(f"/api/profiles/{pid}/sessions", limit=10),
    )
    if not profile.ok:
        return _failed(request, profile)
    if not events.ok:
        return _failed(request, events)
    return render(
        request,
        "person.html",
        p=profile.body,
        events=events.body["items"],
        next_cursor=events.body["next_cursor"],
        paged=bool(cursor),
        visits=visits.body["items"] if visits.ok else [],
    )


# ---------------------------------------------------------------------------------- segments


@router.get("/segments")
async def segments(request: Request) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    api = ApiClient(request)
    answer = await api.get("/api/segments")
    if not answer.ok:
        return _failed(request, answer)
    context: dict[str, Any] = {"combine": "all", "rows": [], "name": ""}
    editing = request.query_params.get("edit")
    if editing:  # the builder filled with a saved segment, to change it
        saved = await api.get(f"/api/segments/{quote(editing, safe='')}")
        if not saved.ok:
            return _failed(request, saved)
        condition = saved.body["condition"]
        context = {"name": saved.body["name"], "segment_id": saved.body["id"], "combine": "all", "rows": []}
        if forms.flat(condition):
            context["combine"], context["rows"] = forms.rows_for(condition)
        else:
            context["condition_json"] = json.dumps(condition, indent=2, ensure_ascii=False)
    return render(request, "segments.html", segments=answer.body["items"], **context)


@router.post("/segments")
async def save_segment(request: Request) -> Response:
    """The builder's two buttons: preview (size and first people) or save."""
    form = await _post_form(request)
    if isinstance(form, Response):
        return form
    api = ApiClient(request)
    condition = forms.condition_of(form)
    combine, rows = forms.rows_for(condition) if isinstance(condition, dict) else ("all", [])
    context: dict[str, Any] = {
        "name": form.get("name"),
        "segment_id": form.get("segment_id"),
        "combine": combine,
        "rows": forms.rows_of(form) or rows,
        "condition_json": form.get("condition_json"),
    }
    problems: list[str] = []
    if isinstance(condition, str):
        problems = [condition]
    elif form.get("action") == "save":
        body = {"name": form.get("name"), "condition": condition}
        editing = form.get("segment_id")
        if editing:
            answer = await api.patch(f"/api/segments/{quote(editing, safe='')}", body)
        else:
            answer = await api.post("/api/segments", body)
        if answer.ok:
            return _back(f"{PREFIX}/segments/{quote(answer.body['id'], safe='')}")
        problems = answer.problems()
    else:
        answer = await api.post("/api/segments/preview", {"condition": condition, "limit": 20})
        if answer.ok:
            context["preview"] = answer.body
        problems = answer.problems()
    listing = await api.get("/api/segments")
    return render(
        request,
        "segments.html",
        status=422 if problems else 200,
        segments=listing.body["items"] if listing.ok else [],
        problems=problems,
        **context,
    )


@router.get("/segments/{segment_id}")
async def segment(request: Request, segment_id: str) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    api = ApiClient(request)
    sid = quote(segment_id, safe="")
    definition, members = await asyncio.gather(
        api.get(f"/api/segments/{sid}"),
        api.get(f"/api/segments/{sid}/people", limit=50, cursor=request.query_params.get("cursor")),
    )
    if not definition.ok:
        return _failed(request, definition)
    if not members.ok:
        return _failed(request, members)
    return render(request, "segment.html", segment=definition.body, members=members.body)


@router.post("/segments/{segment_id}/delete")
async def delete_segment(request: Request, segment_id: str) -> Response:
    form = await _post_form(request)
    if isinstance(form, Response):
        return form
    answer = await ApiClient(request).delete(f"/api/segments/{quote(segment_id, safe='')}")
    if not answer.ok:
        return _failed(request, answer)
    return _back(f"{PREFIX}/segments")


# ---------------------------------------------------------------------------------- metrics


def _metric_body(form: forms.Form) -> dict[str, Any]:
    body: dict[str, Any] = {"type": form.get("type"), "event": form.get("event")}
    for name in ("second_event", "property", "source"):
        if form.get(name):
            body[name] = form.get(name)
    if form.get("timezone"):
        body["timezone"] = form.get("timezone")
    if form.get("type") == "conversion_rate" and form.get("repeatable") == "on":
        body["repeatable"] = True
    if form.get("type") == "property_average" and form.get("per"):
        body["per"] = form.get("per")
    if form.get("where_property"):
        body["where"] = [
            {
                "property": form.get("where_property"),
                "op": "eq",
                "value": forms.typed(form.get("where_value")),
            }
        ]
    return body


def _metric_chart(result: dict[str, Any], kind: str, name: str) -> Any:
    labels = [point["date"][5:] for point in result["series"]]
    values = [point["value"] for point in result["series"]]
    draw = charts.bar_chart if kind == "bar" else charts.line_chart
    return draw(labels, values, label=f"{name}, day by day")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    api = ApiClient(request)
    preset, first, last = forms.date_range({}, _today())
    return render(
        request, "metrics.html", **await _metric_listing(api), f={}, first=first, last=last, preset=preset
    )


#: Saved metrics shown with their last 7 days on the metrics page (each is one query).
DASHBOARD_METRICS = 12


async def _metric_listing(api: ApiClient) -> dict[str, Any]:
    """The saved metrics, the first ones with their last 7 days as a small histogram (the
    dashboard of seed 3.4.4), and the sources a metric may be limited to."""
    listing, sources = await asyncio.gather(api.get("/api/metrics"), api.get("/api/sources"))
    items = listing.body["items"] if listing.ok else []
    results = await asyncio.gather(
        *(api.get(f"/api/metrics/{quote(m['id'], safe='')}") for m in items[:DASHBOARD_METRICS])
    )
    cards = []
    for item, result in zip(items, [*results, *([None] * len(items))], strict=False):
        card = {"metric": item, "value": None, "spark": None}
        if result is not None and result.ok:
            series = result.body["result"]["series"]
            card["value"] = result.body["result"]["value"]
            card["spark"] = charts.sparkline(
                [p["date"] for p in series],
                [p["value"] for p in series],
                label=f"{item['name']}, last 7 days",
            )
        cards.append(card)
    return {"metrics": items, "cards": cards, "sources": sources.body["items"] if sources.ok else []}


@router.post("/metrics")
async def save_metric(request: Request) -> Response:
    """Show a metric over the range picked, or save its definition."""
    form = await _post_form(request)
    if isinstance(form, Response):
        return form
    api = ApiClient(request)
    body = _metric_body(form)
    preset, first, last = forms.date_range(form.values, _today())
    context: dict[str, Any] = {"f": form.values, "first": first, "last": last, "preset": preset}
    if form.get("action") == "save":
        answer = await api.post("/api/metrics", {"name": form.get("name"), **body})
        if answer.ok:
            return _back(f"{PREFIX}/metrics/{quote(answer.body['id'], safe='')}", chart=form.get("chart"))
    else:
        answer = await api.post("/api/metrics/query", {**body, "from": first, "to": last})
        if answer.ok:
            context["result"] = answer.body
            context["chart"] = _metric_chart(answer.body, form.get("chart"), form.get("name") or "Metric")
    return render(
        request,
        "metrics.html",
        status=200 if answer.ok else 422,
        problems=answer.problems(),
        **await _metric_listing(api),
        **context,
    )


@router.get("/metrics/{metric_id}")
async def metric(request: Request, metric_id: str) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    q = dict(request.query_params)
    preset, first, last = forms.date_range(q, _today())
    answer = await ApiClient(request).get(
        f"/api/metrics/{quote(metric_id, safe='')}", **{"from": first, "to": last}
    )
    if answer.status == 404:
        return _failed(request, answer)
    kind = "bar" if q.get("chart") == "bar" else "line"
    if not answer.ok:
        return render(
            request,
            "metric.html",
            status=422,
            m=None,
            problems=answer.problems(),
            first=first,
            last=last,
            preset=preset,
            kind=kind,
            metric_id=metric_id,
        )
    m = answer.body
    return render(
        request,
        "metric.html",
        m=m,
        chart=_metric_chart(m["result"], kind, m["name"]),
        kind=kind,
        preset=preset,
        first=m["from"],
        last=m["to"],
        metric_id=metric_id,
        problems=[],
    )


@router.post("/metrics/{metric_id}/delete")
async def delete_metric(request: Request, metric_id: str) -> Response:
    form = await _post_form(request)
    if isinstance(form, Response):
        return form
    answer = await ApiClient(request).delete(f"/api/metrics/{quote(metric_id, safe='')}")
    if not answer.ok:
        return _failed(request, answer)
    return _back(f"{PREFIX}/metrics")


# ---------------------------------------------------------------------------------- funnels


def _funnel_chart(steps: list[dict[str, Any]], name: str) -> Any:
    rows = [(s["event"], s["people"], s["conversion_from_first"]) for s in steps]
    return charts.funnel_bars(rows, label=f"{name}: people at each step")


async def _funnel_listing(api: ApiClient) -> dict[str, Any]:
    """The saved funnels, and the sources a funnel may be limited to."""
    listing, sources = await asyncio.gather(api.get("/api/funnels"), api.get("/api/sources"))
    return {
        "funnels": listing.body["items"] if listing.ok else [],
        "sources": sources.body["items"] if sources.ok else [],
    }


@router.get("/funnels")
async def funnels(request: Request) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    preset, first, last = forms.date_range({}, _today())
    return render(
        request,
        "funnels.html",
        **await _funnel_listing(ApiClient(request)),
        steps=[],
        name="",
        first=first,
        last=last,
        preset=preset,
    )


@router.post("/funnels")
async def save_funnel(request: Request) -> Response:
    form = await _post_form(request)
    if isinstance(form, Response):
        return form
    api = ApiClient(request)
    steps = [step.strip() for step in form.all("step") if step.strip()]
    source = {"source": form.get("source")} if form.get("source") else {}
    preset, first, last = forms.date_range(form.values, _today())
    context: dict[str, Any] = {
        "source": form.get("source"),
        "steps": steps,
        "name": form.get("name"),
        "first": first,
        "last": last,
        "preset": preset,
    }
    if form.get("action") == "save":
        answer = await api.post("/api/funnels", {"name": form.get("name"), "steps": steps, **source})
        if answer.ok:
            return _back(f"{PREFIX}/funnels/{quote(answer.body['id'], safe='')}")
    else:
        answer = await api.post("/api/funnels/query", {"steps": steps, "from": first, "to": last, **source})
        if answer.ok:
            context["result"] = answer.body["steps"]
            context["chart"] = _funnel_chart(answer.body["steps"], form.get("name") or "Funnel")
    return render(
        request,
        "funnels.html",
        status=200 if answer.ok else 422,
        **await _funnel_listing(api),
        problems=answer.problems(),
        **context,
    )


@router.get("/funnels/{funnel_id}")
async def funnel(request: Request, funnel_id: str) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    preset, first, last = forms.date_range(dict(request.query_params), _today())
    answer = await ApiClient(request).get(
        f"/api/funnels/{quote(funnel_id, safe='')}", **{"from": first, "to": last}
    )
    if not answer.ok:
        return _failed(request, answer)
    f = answer.body
    return render(
        request,
        "funnel.html",
        f=f,
        chart=_funnel_chart(f["steps"], f["name"]),
        preset=preset,
        first=f["from"],
        last=f["to"],
    )


@router.get("/funnels/{funnel_id}/people")
async def funnel_people(request: Request, funnel_id: str) -> Response:
    if (refused := _guard(request)) is not None:
        return refused
    q = dict(request.query_params)
    fid = quote(funnel_id, safe="")
    api = ApiClient(request)
    definition, answer = await asyncio.gather(
        api.get(f"/api/funnels/{fid}", **{"from": q.get("from"), "to": q.get("to")}),
        api.get(
            f"/api/funnels/{fid}/people",
            step=q.get("step", "1"),
            limit=50,
            cursor=q.get("cursor"),
            **{"from": q.get("from"), "to": q.get("to")},
        ),
    )
    if not definition.ok:
        return _failed(request, definition)
    if not answer.ok:
        return _failed(request, answer)
    next_query = ""
    if answer.body["next_cursor"]:
        next_query = urlencode(
            {**{k: v for k, v in q.items() if k != "cursor"}, "cursor": answer.body["next_cursor"]}
        )
    return render(request, "funnel_people.html", f=definition.body, people=answer.body, next_query=next_query)


@router.post("/funnels/{funnel_id}/delete")
async def delete_funnel(request: Request, funnel_id: str) -> Response:
    form = await _post_form(request)
    if isinstance(form, Response):
        return form
    answer = await ApiClient(request).delete(f"/api/funnels/{quote(funnel_id, safe='')}")
    if not answer.ok:
        return _failed(request, answer)
    return _back(f"{PREFIX}/funnels")
