"""The read API the hub offers the portal, plus ``/metrics`` and ``/healthz``, on one loopback listener.

========================================  =======================================================
``GET /api/v1/thongke/{ky}/{ma_don_vi}``  the statistics body the hub holds for one unit and period
``GET /api/v1/thongke/{ky}``              the bodies of every unit for the period
``GET /api/v1/dongbo/{ma_ho_so}``         the dossier's sync state (version pushed, progress, outcome)
``GET /openapi.json``                     the OpenAPI 3.1 document of all of the above (:data:`OPENAPI`)
``GET /healthz``, ``GET /metrics``        liveness, Prometheus (no token; bind to loopback)
========================================  =======================================================

With ``api.tls_certfile`` and ``api.tls_keyfile`` set the listener serves https only
(:func:`server_ssl_context`, TLS 1.2 or later): a bearer token must not cross a network in clear.

``/api/v1/...`` needs ``Authorization: Bearer <token>`` with a token from ``api.tokens``
(compared in constant time); anything else is a 401. Every error is JSON ``{"error": "..."}``,
including the router's own 404 and 405.

Example::

    >>> from pydantic import SecretStr
    >>> app = make_api_app(EmptyView(), [SecretStr("t")], None)
    >>> sorted(r.resource.canonical for r in app.router.routes() if r.method == "GET")[:2]
    ['/api/v1/dongbo/{ma_ho_so}', '/api/v1/thongke/{ky}']
"""

from __future__ import annotations

import hmac
import json
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, SecretStr

from hub.config import ApiSettings, ConfigError

__all__ = ["OPENAPI", "EmptyView", "SyncView", "make_api_app", "server_ssl_context"]

KY_PATTERN = r"^\d{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$"
UNIT_PATTERN = r"^[0-9A-Za-z]{1,16}$"
DOSSIER_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._-]{0,99}$"
_KY = re.compile(KY_PATTERN)
_UNIT = re.compile(UNIT_PATTERN)
_DOSSIER = re.compile(DOSSIER_PATTERN)


class SyncView(Protocol):
    """What the API reads (implemented by :class:`hub.sync.service.SyncService`)."""

    def stats_body(self, ky: str, unit: str) -> dict[str, Any] | None:
        """The statistics body of ``unit`` for ``ky``, or None."""

    def stats_units(self) -> list[str]:
        """Units with figures."""

    def dossier_state(self, ma_ho_so: str) -> BaseModel | None:
        """The dossier's sync state, or None."""

    def health(self) -> dict[str, Any]:
        """``/healthz``: ``{"status", "caught_up", "backlog": {"outbox", "dossiers_pending", "stats_pending"}}``."""


class EmptyView:
    """A view with no data (doctests, a hub that has not loaded its state yet)."""

    def stats_body(self, ky: str, unit: str) -> dict[str, Any] | None:
        """Nothing."""
        del ky, unit
        return None

    def stats_units(self) -> list[str]:
        """Nothing."""
        return []

    def dossier_state(self, ma_ho_so: str) -> BaseModel | None:
        """Nothing."""
        del ma_ho_so
        return None

    def health(self) -> dict[str, Any]:
        """Alive, and not caught up (it has loaded nothing)."""
        return {"status": "ok", "caught_up": False,
                "backlog": {"outbox": 0, "dossiers_pending": 0, "stats_pending": 0}}


_VIEW = web.AppKey("sync_view", SyncView)
_TOKENS = web.AppKey("api_tokens", list)
_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_LEVEL_ROW = {
    "type": "object",
    "required": ["muc_do", "tiep_nhan", "tiep_nhan_truc_tuyen", "da_giai_quyet", "dung_han", "truoc_han",
                 "qua_han", "dang_xu_ly", "qua_han_dang_xu_ly"],
    "properties": {name: {"type": "integer", "minimum": 0} for name in (
        "muc_do", "tiep_nhan", "tiep_nhan_truc_tuyen", "da_giai_quyet", "dung_han", "truoc_han", "qua_han",
        "dang_xu_ly", "qua_han_dang_xu_ly")},
}
_STATS = {
    "type": "object",
    "required": ["ky", "ma_don_vi", "cap", "thoi_diem_tong_hop", "theo_muc_do", "thu_tuc"],
    "properties": {
        "ky": {"type": "string"},
        "ma_don_vi": {"type": "string"},
        "cap": {"type": "string"},
        "thoi_diem_tong_hop": {"type": "string"},
        "theo_muc_do": {"type": "array", "items": _LEVEL_ROW},
        "thu_tuc": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
    },
}
_STATE = {
    "type": "object",
    "required": ["ma_ho_so", "version", "on_portal", "outcome"],
    "properties": {
        "type": {"type": "string", "enum": ["dossier"]},
        "ma_ho_so": {"type": "string"},
        "version": {"type": "integer", "minimum": 0},
        "item_id": {"type": "string"},
        "on_portal": {"type": "boolean"},
        "progress_hwm": {"type": "string"},
        "progress_hwm_keys": {"type": "array", "items": {"type": "string"}},
        "progress_pushed": {"type": "integer", "minimum": 0},
        "outcome": {"type": "string", "enum": ["none", "pushed", "rejected"]},
        "detail": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Invalid parameter", 401: "Missing or wrong bearer token", 404: "Not found"}
    return {str(c): {"description": text[c], **_json(_ERROR)} for c in codes}


def _param(name: str, pattern: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": pattern}}


_KY_PARAM = _param("ky", KY_PATTERN, "Period: 2021, 2021-Q1 or 2021-03")
#: The OpenAPI document served at ``/openapi.json`` (hand-written; tests fuzz the server against it).
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "DVC Hub read API", "version": "1.0.0",
             "description": "Figures and sync state the hub holds, for the provincial portal."},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/thongke/{ky}/{ma_don_vi}": {"get": {
            "summary": "Statistics of one unit for one period",
            "operationId": "getUnitStats",
            "parameters": [_KY_PARAM, _param("ma_don_vi", UNIT_PATTERN, "GSO unit code")],
            "responses": {"200": {"description": "The statistics body", **_json(_STATS)}, **_errors(400, 401, 404)},
        }},
        "/api/v1/thongke/{ky}": {"get": {
            "summary": "Statistics of every unit for one period",
            "operationId": "getPeriodStats",
            "parameters": [_KY_PARAM],
            "responses": {
                "200": {"description": "One body per unit with figures", **_json({
                    "type": "object", "required": ["ky", "du_lieu"],
                    "properties": {"ky": {"type": "string"}, "du_lieu": {"type": "array", "items": _STATS}},
                })},
                **_errors(400, 401),
            },
        }},
        "/api/v1/dongbo/{ma_ho_so}": {"get": {
            "summary": "Sync state of one dossier",
            "operationId": "getDossierSync",
            "parameters": [_param("ma_ho_so", DOSSIER_PATTERN, "Dossier code (MaHoSo)")],
            "responses": {"200": {"description": "The sync state", **_json(_STATE)}, **_errors(400, 401, 404)},
        }},
        "/healthz": {"get": {
            "summary": "Liveness and backlog", "operationId": "healthz", "security": [],
            "responses": {"200": {"description": "Alive; what the portal sync has not done yet", **_json({
                "type": "object", "required": ["status", "caught_up", "backlog"],
                "properties": {
                    "status": {"type": "string"},
                    "caught_up": {"type": "boolean"},
                    "backlog": {"type": "object", "required": ["outbox", "dossiers_pending", "stats_pending"],
                                "properties": {name: {"type": "integer", "minimum": 0} for name in (
                                    "outbox", "dossiers_pending", "stats_pending")}},
                }})}},
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics", "operationId": "metrics", "security": [],
            "responses": {"200": {"description": "Exposition format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/openapi.json": {"get": {
            "summary": "This document", "operationId": "openapi", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", **_json({"type": "object"})}},
        }},
    },
}

_PUBLIC = frozenset({"/healthz", "/metrics", "/openapi.json"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The router's own 404/405 (and anything unexpected) as JSON errors."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(exc.status, exc.reason, headers)


@web.middleware
async def _bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in _PUBLIC:
        return await handler(request)
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    match = False
    if scheme.lower() == "bearer" and presented:
        for token in request.app[_TOKENS]:
            # Every token is compared, in constant time: no early exit to time.
            match |= hmac.compare_digest(presented.strip().encode(), token.get_secret_value().encode())
    if not match:
        return _error(401, "missing or wrong bearer token (Authorization: Bearer <token from api.tokens>)",
                      {"WWW-Authenticate": 'Bearer realm="dvc-hub"'})
    return await handler(request)


async def _unit_stats(request: web.Request) -> web.Response:
    ky, unit = request.match_info["ky"], request.match_info["ma_don_vi"]
    if not _KY.match(ky) or not _UNIT.match(unit):
        return _error(400, "ky must look like 2021, 2021-Q1 or 2021-03 and ma_don_vi be a unit code")
    body = request.app[_VIEW].stats_body(ky, unit)
    if body is None:
        return _error(404, f"no figures for unit {unit} in {ky}")
    return web.json_response(body)


async def _period_stats(request: web.Request) -> web.Response:
    ky = request.match_info["ky"]
    if not _KY.match(ky):
        return _error(400, "ky must look like 2021, 2021-Q1 or 2021-03")
    view = request.app[_VIEW]
    bodies = [b for u in view.stats_units() if (b := view.stats_body(ky, u)) is not None]
    return web.json_response({"ky": ky, "du_lieu": bodies})


async def _dossier(request: web.Request) -> web.Response:
    ma = request.match_info["ma_ho_so"]
    if not _DOSSIER.match(ma):
        return _error(400, "ma_ho_so must be a dossier code (letters, digits, '.', '-', '_')")
    state = request.app[_VIEW].dossier_state(ma)
    if state is None:
        return _error(404, "the hub has not pushed this dossier")
    return web.json_response(json.loads(state.model_dump_json()))


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response(request.app[_VIEW].health())


async def _openapi(_request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


async def _metrics(request: web.Request) -> web.Response:
    registry = request.app.get(_REGISTRY)
    data = generate_latest(registry) if registry is not None else b""
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_api_app(view: SyncView, tokens: Sequence[SecretStr], registry: CollectorRegistry | None) -> web.Application:
    """The API app over ``view``; ``registry`` is what ``/metrics`` exposes."""
    app = web.Application(middlewares=[_errors_as_json, _bearer])
    app[_VIEW] = view
    app[_TOKENS] = list(tokens)
    if registry is not None:
        app[_REGISTRY] = registry
    app.router.add_get("/api/v1/thongke/{ky}/{ma_don_vi}", _unit_stats)
    app.router.add_get("/api/v1/thongke/{ky}", _period_stats)
    app.router.add_get("/api/v1/dongbo/{ma_ho_so}", _dossier)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/metrics", _metrics)
    return app


def server_ssl_context(api: ApiSettings) -> ssl.SSLContext | None:
    """The TLS context of the API listener, or None (plain http) when no certificate is configured.

    Raises :class:`~hub.config.ConfigError` saying which file is wrong.
    """
    if api.tls_certfile is None or api.tls_keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(api.tls_certfile), keyfile=str(api.tls_keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the read API's certificate {api.tls_certfile} / key {api.tls_keyfile}: {exc} "
            "(api.tls_certfile and api.tls_keyfile: PEM files readable by the hub)"
        ) from None
    return context
