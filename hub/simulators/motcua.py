"""Simulator of the units' electronic one-stop systems (contracts.md §1).

One aiohttp app serves every unit's instance under its own prefix: the base URL of unit ``14767``'s
system is ``http://host:port/donvi/14767``, so a connector configured with that base URL calls
``/api/v1/health``, ``/api/v1/hoso/thaydoi`` and ``/api/v1/thutuc`` exactly as on a real instance.

    >>> from datetime import datetime
    >>> from hub.simulators.clock import SimClock, TZ
    >>> from hub.simulators.faults import Faults
    >>> from hub.simulators.world import World
    >>> world = World(SimClock.manual(datetime(2021, 1, 15, 9, 30, tzinfo=TZ)))
    >>> app = make_motcua_app(world, Faults(), {"14767": "key-14767"})

What it does on purpose, because real instances do:

- keyset paging by (``NgayCapNhat``, ``MaHoSo``) with one-second stamps, so ties are common;
- only the newest *visible* version of each dossier (late commits: ``World.upsert_dossier``'s
  ``visible_delay``), as a full snapshot;
- empty dates served as ``""`` or left out, and an in-person ``KenhThucHien`` served as ``"1"``,
  ``""``, ``null`` or missing, chosen per dossier version with a seeded hash (a re-read of the same
  version looks the same, as a database row would);
- NFD text, HTTP faults and ``200 {"error_code":"-1","message":"Lỗi hệ thống"}`` per :class:`Faults`.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

from aiohttp import web

from hub.simulators._http import SIM_CONTEXT, SimContext, fault_middleware, json_response, setup_sim_app, to_nfd
from hub.simulators.clock import fmt_compact, parse_compact
from hub.simulators.faults import Faults
from hub.simulators.world import World

__all__ = ["make_motcua_app"]

_PREFIX = "/donvi/{ma_don_vi}/api/v1"
_UNITS_KEY = web.AppKey("motcua_units", dict)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error_code": code, "message": message}, status=status, headers=headers)


def _error_body() -> web.Response:
    # The "under load" answer of contracts.md §1: a 200 that is a failure, not "no data".
    return json_response({"error_code": "-1", "message": "Lỗi hệ thống"})


def make_motcua_app(world: World, faults: Faults, units: dict[str, str]) -> web.Application:
    """The one-stop systems of ``units`` (unit code -> API key), all sharing ``world``."""
    app = web.Application(middlewares=[fault_middleware])
    setup_sim_app(app, SimContext("motcua", world, faults, _error, _error_body))
    app[_UNITS_KEY] = dict(units)
    app.router.add_get(_PREFIX + "/health", _health)
    app.router.add_get(_PREFIX + "/hoso/thaydoi", _changes)
    app.router.add_get(_PREFIX + "/thutuc", _catalogue)
    return app


def _authorise(request: web.Request) -> tuple[str, web.Response | None]:
    """The unit of the request, or an error response (unknown unit 404, bad key 401)."""
    unit = request.match_info["ma_don_vi"]
    keys: dict[str, str] = request.app[_UNITS_KEY]
    if unit not in keys:
        return unit, _error(404, "404", f"Không có hệ thống một cửa cho đơn vị {unit}")
    if request.headers.get("X-Api-Key") != keys[unit]:
        return unit, _error(401, "401", "Sai hoặc thiếu X-Api-Key (invalid or missing API key)")
    return unit, None


def _dump(request: web.Request, payload: dict[str, Any]) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    return json_response(to_nfd(payload) if ctx.faults.nfd else payload)


async def _health(request: web.Request) -> web.Response:
    unit, denied = _authorise(request)
    if denied:
        return denied
    now = request.app[SIM_CONTEXT].world.clock.now()
    return _dump(request, {"error_code": "0", "ma_don_vi": unit, "thoi_gian_may_chu": fmt_compact(now)})


async def _changes(request: web.Request) -> web.Response:
    unit, denied = _authorise(request)
    if denied:
        return denied
    ctx = request.app[SIM_CONTEXT]
    tu = request.query.get("tu", "")
    sau = request.query.get("sau") or None
    raw_limit = request.query.get("gioihan", str(DEFAULT_LIMIT))
    try:
        parse_compact(tu)
    except ValueError:
        return _error(400, "400", f"Tham số tu phải có dạng yyyyMMddHHmmss (14 chữ số), nhận được {tu!r}")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        return _error(400, "400", f"Tham số gioihan phải là số nguyên từ 1 đến {MAX_LIMIT}, nhận được {raw_limit!r}")
    items, more = ctx.world.dossier_changes(unit, tu, sau, int(raw_limit))
    data = [_serialise(item, ctx) for item in items]
    return _dump(request, {"error_code": "0", "message": "", "con_nua": more, "data": data})


async def _catalogue(request: web.Request) -> web.Response:
    unit, denied = _authorise(request)
    if denied:
        return denied
    ctx = request.app[SIM_CONTEXT]
    return _dump(request, {"error_code": "0", "data": ctx.world.catalogue(unit)})


def _serialise(snapshot: dict[str, Any], ctx: SimContext) -> dict[str, Any]:
    """Write a stored snapshot the way this vendor's serialiser does (empty dates, null channels)."""
    seed = f"{ctx.world.seed}:{snapshot['MaHoSo']}:{snapshot['PhienBan']}".encode()
    rng = random.Random(zlib.crc32(seed))  # noqa: S311 - stable per version, not crypto
    out: dict[str, Any] = {}
    for key, value in snapshot.items():
        if key.startswith("Ngay") and value in ("", None) and rng.random() < 0.5:
            continue  # an empty date left out rather than written as ""
        out[key] = value
    channel = out.get("KenhThucHien")
    if channel in ("1", 1, "", None):
        pick = rng.random()
        if pick < 0.55:
            out["KenhThucHien"] = "1"
        elif pick < 0.75:
            out["KenhThucHien"] = ""
        elif pick < 0.9:
            out["KenhThucHien"] = None
        else:
            out.pop("KenhThucHien", None)
    return out
