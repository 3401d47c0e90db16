"""What the three simulator apps share: fault injection, request log, counters, control endpoints.

Each app stores a :class:`SimContext` under :data:`SIM_CONTEXT`. :func:`fault_middleware` runs in
front of every contract endpoint (never in front of ``/_sim/...``) and injects, in this order:
latency, maintenance window, connection reset, timeout, 429, 5xx, 200-with-error-body. Then the
real handler runs, and the request is counted and logged in the World with secrets removed.

Control endpoints (no auth, no faults; the simulators bind to loopback):

- ``GET /_sim/faults``: the current switches;
- ``POST /_sim/faults``: JSON object of switches to set, e.g. ``{"p_5xx": 0.2}``; optional
  ``"preset": "off" | "all_on"`` applied first and ``"spec": "p_429=0.1,..."`` (CLI syntax);
- ``GET /_sim/stats``: request counts by route and status, and injected faults by kind;
- ``POST /_sim/stats/reset``: zero the counters.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from hub.simulators.clock import fmt_iso
from hub.simulators.faults import Faults
from hub.simulators.world import World

__all__ = [
    "SIM_CONTEXT",
    "ErrorResponder",
    "SimContext",
    "SimStats",
    "decode_basic_auth",
    "dumps",
    "fault_middleware",
    "json_response",
    "reset_connection",
    "setup_sim_app",
    "to_nfd",
]

#: JSON as Vietnamese systems write it: UTF-8 text, not ``\\u`` escapes.
dumps = functools.partial(json.dumps, ensure_ascii=False)

#: Header names never written to the request log.
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization", "set-cookie"})
#: Form fields never written to the request log (client_secret_post style token requests).
_SECRET_FIELDS = frozenset({"client_secret", "password", "secret", "api_key"})

#: Request bodies longer than this are logged as their size only (a 100-dossier push is ~150 kB).
_MAX_LOGGED_BODY = 1_000_000

#: ``(http_status, error_code, message, headers) -> response`` in the app's own error format.
ErrorResponder = Callable[[int, str, str, dict[str, str] | None], web.Response]


@dataclass
class SimStats:
    """Request counters of one app (what ``GET /_sim/stats`` shows)."""

    requests: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "requests": self.requests,
            "by_route": dict(self.by_route),
            "by_status": dict(self.by_status),
            "injected": dict(self.injected),
        }

    def reset(self) -> None:
        """Zero every counter."""
        self.requests = 0
        self.by_route.clear()
        self.by_status.clear()
        self.injected.clear()


@dataclass
class SimContext:
    """Everything a simulator app's handlers and middleware need."""

    name: str
    world: World
    faults: Faults
    error_response: ErrorResponder
    #: The app's "HTTP 200 with an error in the body", or None if the system never does that.
    error_body: Callable[[], web.Response] | None = None
    stats: SimStats = field(default_factory=SimStats)
    #: Answers longer than this are logged as their size only.
    log_answer_limit: int = 4096


SIM_CONTEXT = web.AppKey("sim_context", SimContext)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response with UTF-8 text (no ``\\u`` escapes)."""
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def to_nfd(value: Any) -> Any:
    """``value`` with every string decomposed (NFD), recursively through dicts and lists."""
    if isinstance(value, str):
        return unicodedata.normalize("NFD", value)
    if isinstance(value, dict):
        return {k: to_nfd(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_nfd(v) for v in value]
    return value


def decode_basic_auth(header: str) -> tuple[str, str] | None:
    """``(login, password)`` of an ``Authorization: Basic ...`` header, or None if it is not one.

    Hand-written because aiohttp deprecates its ``BasicAuth`` helper for aiohttp 4.
    """
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, sep, password = decoded.partition(":")
    return (login, password) if sep else None


def reset_connection(request: web.Request) -> web.Response:
    """Abort the TCP connection: the client gets no answer (a disconnect or reset).

    aiohttp ignores the response returned afterwards; it is only there to satisfy the handler type.
    """
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499, text="connection reset by the simulator")


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inject the configured faults, then run the handler, count and log the exchange."""
    ctx = request.app[SIM_CONTEXT]
    if request.path.startswith("/_sim/"):
        return await handler(request)
    ctx.stats.requests += 1
    resource = request.match_info.route.resource
    ctx.stats.by_route[resource.canonical if resource is not None else "<unmatched>"] += 1
    body_text = await request.text() if request.can_read_body else ""  # cached for the handler
    fault, response = await _inject(ctx, request)
    if response is None:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _record(ctx, request, body_text, exc.status, exc.text, fault=None)
            raise
    if fault is None and response.status == 499:
        fault = "reset"  # a handler (e.g. reset after store) dropped the connection
    _record(ctx, request, body_text, response.status, _answer_text(ctx, response), fault=fault)
    return response


async def _inject(ctx: SimContext, request: web.Request) -> tuple[str | None, web.StreamResponse | None]:
    faults = ctx.faults
    delay = faults.latency_s()
    if delay > 0:
        await asyncio.sleep(delay)
    if faults.in_maintenance(ctx.world.clock.now()):
        ctx.stats.injected["maintenance"] += 1
        if faults.maintenance_mode == "timeout":
            await asyncio.sleep(faults.timeout_s)
            return "maintenance", reset_connection(request)
        headers = {"Retry-After": str(max(1, min(60, int(faults.maintenance_s))))}
        return "maintenance", ctx.error_response(503, "503", "Hệ thống đang bảo trì, vui lòng thử lại sau", headers)
    if faults.roll(faults.p_reset):
        ctx.stats.injected["reset"] += 1
        return "reset", reset_connection(request)
    if faults.roll(faults.p_timeout):
        ctx.stats.injected["timeout"] += 1
        await asyncio.sleep(faults.timeout_s)
        if faults.timeout_drop:
            return "timeout", reset_connection(request)
        # A slow answer, not a lost one: the request is then served normally.
    if faults.roll(faults.p_429):
        ctx.stats.injected["429"] += 1
        headers = {"Retry-After": str(faults.retry_after_s)}
        return "429", ctx.error_response(429, "429", "Quá nhiều yêu cầu, thử lại sau", headers)
    if faults.roll(faults.p_5xx):
        status = int(faults.choice((500, 502, 503, 504)))
        ctx.stats.injected["5xx"] += 1
        return "5xx", ctx.error_response(status, str(status), "Lỗi máy chủ", None)
    if ctx.error_body is not None and faults.roll(faults.p_error_body):
        ctx.stats.injected["error_body"] += 1
        return "error_body", ctx.error_body()
    return None, None


def _record(
    ctx: SimContext, request: web.Request, body_text: str, status: int, answer: Any, *, fault: str | None
) -> None:
    ctx.stats.by_status[str(status)] += 1
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _SECRET_HEADERS}
    ctx.world.log_request(
        {
            "app": ctx.name,
            "at": fmt_iso(ctx.world.clock.now()),
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": headers,
            "body": _parse_body(body_text, request.content_type),
            "status": status,
            "answer": answer,
            "fault": fault,
        }
    )


def _parse_body(text: str, content_type: str) -> Any:
    if not text:
        return None
    if content_type == "application/x-www-form-urlencoded":
        return {k: ("***" if k.lower() in _SECRET_FIELDS else v) for k, v in parse_qsl(text)}
    if len(text) > _MAX_LOGGED_BODY:
        return f"<{len(text)} characters>"  # keeps a long demo's log from eating the memory
    try:
        return json.loads(text)
    except ValueError:
        return text[:10_000]


def _answer_text(ctx: SimContext, response: web.StreamResponse) -> Any:
    if response.status == 499:
        return None
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes):
        return None
    if len(body) > ctx.log_answer_limit:
        return f"<{len(body)} bytes>"
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---------------------------------------------------------------------- control endpoints


async def _get_faults(request: web.Request) -> web.Response:
    return json_response(request.app[SIM_CONTEXT].faults.to_dict())


async def _post_faults(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    try:
        body = await request.json()
        _apply_control(ctx.faults, body)
    except (ValueError, TypeError) as exc:
        return json_response({"error": str(exc), "known": Faults.field_names()}, status=400)
    return json_response(ctx.faults.to_dict())


def _apply_control(faults: Faults, body: Any) -> None:
    """Apply a ``POST /_sim/faults`` body: preset first, then spec, then single switches."""
    if not isinstance(body, dict):
        raise TypeError("the body must be a JSON object of fault switches")
    changes = dict(body)
    preset = changes.pop("preset", None)
    spec = changes.pop("spec", None)
    if preset is not None:
        if preset not in ("off", "all_on"):
            raise ValueError("preset must be 'off' or 'all_on'")
        seed = int(changes.get("seed", faults.seed))
        base = Faults.all_on(seed) if preset == "all_on" else Faults(seed=seed)
        faults.update(base.to_dict())
    if spec is not None:
        faults.apply_spec(str(spec))
    faults.update(changes)


async def _get_stats(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    return json_response({"app": ctx.name, **ctx.stats.to_dict()})


async def _reset_stats(request: web.Request) -> web.Response:
    request.app[SIM_CONTEXT].stats.reset()
    return json_response({"ok": True})


def setup_sim_app(app: web.Application, ctx: SimContext) -> None:
    """Attach ``ctx`` to ``app`` and add the control endpoints (the middleware is passed at creation)."""
    app[SIM_CONTEXT] = ctx
    app.router.add_get("/_sim/faults", _get_faults)
    app.router.add_post("/_sim/faults", _post_faults)
    app.router.add_get("/_sim/stats", _get_stats)
    app.router.add_post("/_sim/stats/reset", _reset_stats)
