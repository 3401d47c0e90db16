"""Simulator of the provincial public service portal behind the LGSP gateway (contracts.md §3).

Source side (what the hub reads), answered in the gateway envelope
``{"code": 200, "status": "OK", "correlationId": "...", "response": {...}}``:

- ``GET /api/v1/hoso-truc-tuyen?tu=<ISO-8601>&trang=<1..>&kich_thuoc=<1..200>``: online
  submissions, payments and ratings ordered by ``cap_nhat_luc``, paged by page number, with the
  move-during-paging trap (``Faults.p_move``);
- ``GET /api/v1/thutuc?ma_don_vi=<code>``: ``response = {"ma_don_vi", "tong_so", "du_lieu": [rows]}``
  (the contract gives the row fields only; the wrapper mirrors the paged endpoint's).

Target side (what the hub pushes): ``POST /api/v1/dongbo/hoso``, ``POST /api/v1/dongbo/tiendo``,
``PUT /api/v1/thongke/dvctt/{ky}/{ma_don_vi}`` and ``GET /api/v1/dongbo/hoso/{ma_ho_so}``. The
contract says both "replies use the gateway envelope" and "reply ``{"error_code": "0", "message": ""}``";
the simulator answers the envelope with ``response = {"error_code", "message"}`` *and* repeats
``error_code``/``message`` at the top level, so a client reading either place sees the outcome.
Error codes: ``"1"`` invalid format, ``"2"`` batch too large, ``"3"``/``"-3"`` dossier exists,
``"4"`` personal data refused; every rejection refuses the whole batch.

Auth: ``POST /oauth2/token`` (HTTP Basic ``client_id:client_secret``, form
``grant_type=client_credentials``) then ``Authorization: Bearer``. Tokens expire after ``token_ttl``
seconds of the World's clock and can be revoked early (``Faults.revoke_every`` or
``POST /_sim/revoke``). About ``rate_limit_per_s`` requests per second per client, then 429 with
``Retry-After``. ``Idempotency-Key`` on the targets is honoured for 24 hours of the World's clock.

    >>> from datetime import datetime
    >>> from hub.simulators.clock import SimClock, TZ
    >>> from hub.simulators.world import World
    >>> world = World(SimClock.manual(datetime(2021, 1, 15, tzinfo=TZ)))
    >>> app = make_portal_app(world, Faults(), {"dvc-hub": "secret"})
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web

from hub.simulators._http import (
    SIM_CONTEXT,
    SimContext,
    decode_basic_auth,
    fault_middleware,
    json_response,
    reset_connection,
    setup_sim_app,
    to_nfd,
)
from hub.simulators.clock import SimClock, parse_compact, parse_iso
from hub.simulators.faults import Faults
from hub.simulators.world import World

__all__ = ["MAX_BATCH", "PortalState", "make_portal_app", "revoke_all_tokens"]

MAX_BATCH = 100
MAX_PROGRESS_ROWS = 1000
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
IDEMPOTENCY_TTL = timedelta(hours=24)
STATUSES = frozenset(str(n) for n in range(1, 11))
_KY = re.compile(r"^\d{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$")
_STATS_FIELDS = (
    "tiep_nhan", "tiep_nhan_truc_tuyen", "da_giai_quyet", "dung_han", "truoc_han", "qua_han",
    "dang_xu_ly", "qua_han_dang_xu_ly",
)
_CATALOGUE_COUNTS = ("muc_do_3", "muc_do_4", "khong_phat_sinh_ho_so")
_LEVELS = ("TINH", "HUYEN", "XA")
_CLIENT = web.RequestKey("portal_client_id", str)


@dataclass
class _Token:
    client_id: str
    expires_at: datetime


@dataclass
class _Stored:
    body_hash: str
    status: int
    body: bytes
    stored_at: datetime


@dataclass
class PortalState:
    """The portal's own bookkeeping: clients, tokens, rate windows, idempotency records."""

    clients: dict[str, str]
    token_ttl: int
    require_id_number: bool
    rate_limit_per_s: float
    clock: SimClock | None = None  # the portal's own clock; None = the sources' clock (world.clock)
    tokens: dict[str, _Token] = field(default_factory=dict)
    authenticated_requests: int = 0
    windows: dict[str, deque[float]] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], _Stored] = field(default_factory=dict)

    def revoke_all(self) -> int:
        """Revoke every token issued so far; returns how many."""
        count = len(self.tokens)
        self.tokens.clear()
        return count


_STATE = web.AppKey("portal_state", PortalState)


def _server_now(state: PortalState) -> datetime:
    assert state.clock is not None  # set by make_portal_app
    return state.clock.now()


# ---------------------------------------------------------------------- envelopes


def _envelope(
    response: Any,
    *,
    code: int = 200,
    http_status: int = 200,
    headers: dict[str, str] | None = None,
    top: dict[str, Any] | None = None,
) -> web.Response:
    """The LGSP envelope around ``response``; ``top`` adds fields next to ``response``."""
    try:
        status = "OK" if code == 200 else HTTPStatus(code).phrase
    except ValueError:
        status = "ERROR"
    body = {"code": code, "status": status, "correlationId": uuid.uuid4().hex, "response": response, **(top or {})}
    return json_response(body, status=http_status, headers=headers)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _envelope(None, code=status, http_status=status, headers=headers,
                     top={"error_code": code, "message": message})


def _error_body() -> web.Response:
    # HTTP 200, but the gateway says the backend failed: a failure, never "no data".
    failure = {"error_code": "-1", "message": "Lỗi hệ thống"}
    return _envelope(failure, code=500, top=failure)


def _result(code: str, message: str = "", **extra: Any) -> web.Response:
    """A target endpoint's reply: the outcome both inside ``response`` and at the top level."""
    outcome = {"error_code": code, "message": message}
    return _envelope({**outcome, **extra}, top=outcome)


# ---------------------------------------------------------------------- app


def make_portal_app(
    world: World,
    faults: Faults,
    clients: dict[str, str],
    token_ttl: int = 3600,
    require_id_number: bool = False,
    *,
    rate_limit_per_s: float = 20.0,
    clock: SimClock | None = None,
) -> web.Application:
    """The provincial portal for OAuth2 ``clients`` (client_id -> client_secret) over ``world``.

    ``clock`` is the portal's own server clock for token expiry and the 24 h idempotency window. It
    defaults to the sources' clock (``world.clock``); a scenario that replays history at high speed
    passes a live clock, since a portal server's clock does not race through 2020 with the replay.
    """
    app = web.Application(middlewares=[fault_middleware, _auth_middleware])
    setup_sim_app(app, SimContext("portal", world, faults, _error, _error_body, log_answer_limit=65_536))
    app[_STATE] = PortalState(dict(clients), token_ttl, require_id_number, rate_limit_per_s, clock or world.clock)
    app.router.add_post("/oauth2/token", _token)
    app.router.add_get("/api/v1/hoso-truc-tuyen", _online_items)
    app.router.add_get("/api/v1/thutuc", _catalogue)
    app.router.add_post("/api/v1/dongbo/hoso", _push_dossiers)
    app.router.add_get("/api/v1/dongbo/hoso/{ma_ho_so}", _lookup_dossier)
    app.router.add_post("/api/v1/dongbo/tiendo", _push_progress)
    app.router.add_put("/api/v1/thongke/dvctt/{ky}/{ma_don_vi}", _put_stats)
    app.router.add_post("/_sim/revoke", _sim_revoke)
    return app


def revoke_all_tokens(app: web.Application) -> int:
    """Revoke every token of a portal app (what ``POST /_sim/revoke`` does)."""
    return app[_STATE].revoke_all()


async def _sim_revoke(request: web.Request) -> web.Response:
    return json_response({"revoked": revoke_all_tokens(request.app)})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer tokens on everything but the token endpoint, then the per-client rate limit."""
    if request.path.startswith("/_sim/") or request.path == "/oauth2/token":
        return await handler(request)
    state = request.app[_STATE]
    ctx = request.app[SIM_CONTEXT]
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, token = header.partition(" ")
    entry = state.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
    if entry is not None and _server_now(state) >= entry.expires_at:
        state.tokens.pop(token.strip(), None)
        entry = None
    if entry is not None:
        state.authenticated_requests += 1
        if ctx.faults.revoke_every and state.authenticated_requests % ctx.faults.revoke_every == 0:
            ctx.stats.injected["revoke"] += 1
            state.tokens.pop(token.strip(), None)
            entry = None
    if entry is None:
        return _unauthorised("invalid_token", "Access token không hợp lệ, đã hết hạn hoặc đã bị thu hồi")
    limited = _rate_limit(state, entry.client_id)
    if limited is not None:
        return limited
    request[_CLIENT] = entry.client_id
    return await handler(request)


def _unauthorised(error: str, message: str) -> web.Response:
    scheme = 'Basic realm="LGSP"' if error == "invalid_client" else f'Bearer error="{error}"'
    return _envelope(None, code=401, http_status=401, headers={"WWW-Authenticate": scheme},
                     top={"error": error, "error_code": "401", "message": message})


def _rate_limit(state: PortalState, client_id: str) -> web.Response | None:
    """A sliding one-second window per client; over the limit -> 429 with Retry-After."""
    now = time.monotonic()
    window = state.windows.setdefault(client_id, deque())
    while window and now - window[0] >= 1.0:
        window.popleft()
    if len(window) >= state.rate_limit_per_s:
        wait = max(1, math.ceil(1.0 - (now - window[0])))
        return _error(429, "429", "Vượt giới hạn tần suất gọi API", {"Retry-After": str(wait)})
    window.append(now)
    return None


async def _token(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    auth = decode_basic_auth(request.headers.get(hdrs.AUTHORIZATION, ""))
    if auth is None:
        return _unauthorised("invalid_client", "Thiếu hoặc sai HTTP Basic client_id:client_secret")
    client_id, client_secret = auth
    secret = state.clients.get(client_id)
    if secret is None or not hmac.compare_digest(secret.encode(), client_secret.encode()):
        return _unauthorised("invalid_client", "Sai client_id hoặc client_secret")
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return json_response({"error": "unsupported_grant_type",
                              "error_description": "grant_type phải là client_credentials"}, status=400)
    limited = _rate_limit(state, client_id)
    if limited is not None:
        return limited
    token = secrets.token_urlsafe(24)
    state.tokens[token] = _Token(client_id, _server_now(state) + timedelta(seconds=state.token_ttl))
    return json_response({"access_token": token, "token_type": "Bearer", "expires_in": state.token_ttl})


# ---------------------------------------------------------------------- source side


def _int_param(request: web.Request, name: str, default: int, low: int, high: int | None) -> int | None:
    raw = request.query.get(name, str(default))
    if not raw.isdigit():
        return None
    value = int(raw)
    return value if value >= low and (high is None or value <= high) else None


async def _online_items(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    raw_tu = request.query.get("tu", "")
    try:
        since = parse_iso(raw_tu)
    except ValueError:
        hint = " (a '+' in a query string must be sent as %2B)" if " " in raw_tu else ""
        return _error(400, "400", f"Tham số tu phải là thời điểm ISO-8601 có múi giờ, nhận được {raw_tu!r}{hint}")
    page = _int_param(request, "trang", 1, 1, None)
    size = _int_param(request, "kich_thuoc", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    if page is None or size is None:
        return _error(400, "400", f"trang phải >= 1 và kich_thuoc trong 1..{MAX_PAGE_SIZE}")
    items = ctx.world.portal_items(since)
    start = (page - 1) * size
    if page > 1 and items and ctx.faults.roll(ctx.faults.p_move):
        # A citizen pays or rates while the client pages: an item already read moves to the end
        # and every later item shifts one place earlier, so the next offset skips one.
        earlier = min(start, len(items))
        if earlier > 0:
            ctx.world.touch_portal_item(items[ctx.faults.randint(0, earlier - 1)]["ma_ho_so"])
            ctx.stats.injected["move"] += 1
            items = ctx.world.portal_items(since)
    payload = {"tong_so": len(items), "trang": page, "du_lieu": items[start : start + size]}
    return _envelope(to_nfd(payload) if ctx.faults.nfd else payload)


async def _catalogue(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    unit = request.query.get("ma_don_vi", "")
    if not unit:
        return _error(400, "400", "Thiếu tham số ma_don_vi")
    rows = ctx.world.catalogue(unit)
    payload = {"ma_don_vi": unit, "tong_so": len(rows), "du_lieu": rows}
    return _envelope(to_nfd(payload) if ctx.faults.nfd else payload)


# ---------------------------------------------------------------------- target side


async def _idempotent(
    request: web.Request, apply: Callable[[Any], web.Response]
) -> web.StreamResponse:
    """Parse the JSON body, honour ``Idempotency-Key``, run ``apply``, maybe lose the answer.

    Everything after the body is read runs without an await, so two requests never interleave
    between "does the dossier exist?" and "store it".
    """
    ctx = request.app[SIM_CONTEXT]
    state = request.app[_STATE]
    raw = await request.read()
    key = request.headers.get("Idempotency-Key")
    now = _server_now(state)
    slot = (str(request.get(_CLIENT, "")), key) if key else None
    body_hash = hashlib.sha256(request.method.encode() + request.path.encode() + b"\0" + raw).hexdigest()
    if slot is not None:
        stored = state.idempotency.get(slot)
        if stored is not None and now - stored.stored_at < IDEMPOTENCY_TTL:
            if stored.body_hash != body_hash:
                return _error(422, "422", "Idempotency-Key đã dùng cho một nội dung khác "
                              "(the key was already used with a different body)")
            ctx.stats.injected["idempotent_replay"] += 1
            return web.Response(status=stored.status, body=stored.body, content_type="application/json",
                                headers={"Idempotent-Replayed": "true"})
    try:
        body = _loads(raw)
    except ValueError as exc:
        response = _result("1", f"Nội dung không phải JSON hợp lệ: {exc}")
    else:
        response = apply(body)
    if slot is not None:
        assert isinstance(response.body, bytes)
        state.idempotency[slot] = _Stored(body_hash, response.status, response.body, now)
    if ctx.faults.roll(ctx.faults.p_reset_after_store):
        ctx.stats.injected["reset_after_store"] += 1
        return reset_connection(request)
    return response


def _loads(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"))


async def _push_dossiers(request: web.Request) -> web.StreamResponse:
    ctx = request.app[SIM_CONTEXT]
    state = request.app[_STATE]

    def apply(body: Any) -> web.Response:
        if not isinstance(body, dict) or body.get("isUpdating") not in ("True", "False"):
            return _result("1", 'Thân yêu cầu phải là {"isUpdating": "True"|"False", "data": [...]}')
        data = body.get("data")
        if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
            return _result("1", "data phải là danh sách hồ sơ không rỗng")
        if len(data) > MAX_BATCH:
            return _result("2", f"Tối đa {MAX_BATCH} hồ sơ mỗi lần gửi, nhận được {len(data)}")
        for dossier in data:
            refused = _personal_data(dossier, state.require_id_number)
            if refused:
                return _result("4", refused)
        problems = [p for dossier in data for p in _dossier_problems(dossier)]
        if problems:
            return _result("1", "Dữ liệu không hợp lệ: " + "; ".join(problems[:10]))
        if body["isUpdating"] == "False":
            existing = sorted({d["MaHoSo"] for d in data if ctx.world.portal_dossier(d["MaHoSo"])})
            if existing:
                code = str(ctx.faults.choice(("3", "-3")))
                return _result(code, "Hồ sơ đã tồn tại: " + ", ".join(existing), ton_tai=existing)
        for dossier in data:
            ctx.world.store_portal_dossier(dossier)
        return _result("0", "", so_ho_so=len(data))

    return await _idempotent(request, apply)


async def _push_progress(request: web.Request) -> web.StreamResponse:
    ctx = request.app[SIM_CONTEXT]

    def apply(body: Any) -> web.Response:
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            return _result("1", 'Thân yêu cầu phải là {"data": [<dòng tiến độ>...]} không rỗng')
        if len(rows) > MAX_PROGRESS_ROWS:
            return _result("2", f"Tối đa {MAX_PROGRESS_ROWS} dòng mỗi lần gửi")
        problems: list[str] = []
        for row in rows:
            if row.get("ChuHoSo") or row.get("SoDienThoai"):
                return _result("4", "Không được gửi tên hoặc số điện thoại của người nộp")
            problems += _progress_problems(row, str(row.get("MaHoSo", "?")))
            if not isinstance(row.get("MaHoSo"), str) or not row.get("MaHoSo"):
                problems.append("dòng tiến độ thiếu MaHoSo")
        if problems:
            return _result("1", "Dữ liệu không hợp lệ: " + "; ".join(problems[:10]))
        ctx.world.add_portal_progress(rows)
        return _result("0", "", so_dong=len(rows))

    return await _idempotent(request, apply)


async def _put_stats(request: web.Request) -> web.StreamResponse:
    ctx = request.app[SIM_CONTEXT]
    ky, unit = request.match_info["ky"], request.match_info["ma_don_vi"]

    def apply(body: Any) -> web.Response:
        problems = _stats_problems(body, ky, unit)
        if problems:
            return _result("1", "Số liệu không hợp lệ: " + "; ".join(problems[:10]))
        ctx.world.put_portal_stats(ky, unit, body)
        return _result("0", "")

    return await _idempotent(request, apply)


async def _lookup_dossier(request: web.Request) -> web.Response:
    ctx = request.app[SIM_CONTEXT]
    ma = request.match_info["ma_ho_so"]
    entry = ctx.world.portal_dossier(ma)
    if entry is None:
        outcome = {"error_code": "404", "message": f"Không tìm thấy hồ sơ {ma}"}
        return _envelope(outcome, code=404, http_status=404, top=outcome)
    return _result("0", "", data=entry["snapshot"], so_lan_ghi=entry["writes"], cap_nhat_luc=entry["updated_at"])


# ---------------------------------------------------------------------- validation


def _personal_data(dossier: dict[str, Any], require_id_number: bool) -> str | None:
    """Why the portal refuses this dossier's personal data, or None."""
    ma = dossier.get("MaHoSo", "?")
    for name in ("ChuHoSo", "SoDienThoai"):
        if dossier.get(name) not in (None, ""):
            return f"Hồ sơ {ma}: không được gửi {name} (tên/số điện thoại người nộp)"
    if dossier.get("SoGiayToChuHoSo") not in (None, "") and not require_id_number:
        return f"Hồ sơ {ma}: tỉnh không yêu cầu SoGiayToChuHoSo, không được gửi số giấy tờ"
    return None


def _is_compact_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_compact(value)
    except ValueError:
        return False
    return True


def _dossier_problems(dossier: dict[str, Any]) -> list[str]:
    ma = dossier.get("MaHoSo")
    label = ma if isinstance(ma, str) and ma else "?"
    problems = [f"hồ sơ {label}: thiếu {name}" for name in ("MaHoSo", "MaTTHC", "MaDonVi")
                if not isinstance(dossier.get(name), str) or not dossier.get(name)]
    if dossier.get("TrangThaiHoSo") not in STATUSES:
        problems.append(f"hồ sơ {label}: TrangThaiHoSo {dossier.get('TrangThaiHoSo')!r} phải là chuỗi '1'..'10'")
    for name, value in dossier.items():
        if name.startswith("Ngay") and value not in ("", None) and not _is_compact_date(value):
            problems.append(f"hồ sơ {label}: {name} {value!r} không đúng dạng yyyyMMddHHmmss")
    steps = dossier.get("QuaTrinhXuLy", [])
    if not isinstance(steps, list):
        problems.append(f"hồ sơ {label}: QuaTrinhXuLy phải là danh sách")
    else:
        for step in steps:
            if not isinstance(step, dict):
                problems.append(f"hồ sơ {label}: mỗi bước QuaTrinhXuLy phải là đối tượng")
                continue
            problems += _progress_problems(step, label)
    return problems


def _progress_problems(row: dict[str, Any], label: str) -> list[str]:
    problems = []
    if row.get("TrangThai") not in STATUSES:
        problems.append(f"hồ sơ {label}: TrangThai {row.get('TrangThai')!r} phải là chuỗi '1'..'10'")
    if not _is_compact_date(row.get("ThoiDiemXuLy")):
        problems.append(f"hồ sơ {label}: ThoiDiemXuLy {row.get('ThoiDiemXuLy')!r} không đúng dạng yyyyMMddHHmmss")
    problems += [f"hồ sơ {label}: {name} phải là chuỗi" for name in ("PhongBanXuLy", "NoiDungXuLy")
                 if name in row and not isinstance(row[name], str)]
    return problems


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _stats_problems(body: Any, ky: str, unit: str) -> list[str]:
    """Shape and arithmetic checks of a statistics body (contracts.md §3)."""
    if not isinstance(body, dict):
        return ["thân yêu cầu phải là đối tượng JSON"]
    problems = []
    if not _KY.match(ky):
        problems.append(f"kỳ {ky!r} phải có dạng 2021, 2021-03 hoặc 2021-Q1")
    if body.get("ky") != ky:
        problems.append(f"ky trong thân ({body.get('ky')!r}) khác ky trên đường dẫn ({ky!r})")
    if body.get("ma_don_vi") != unit:
        problems.append(f"ma_don_vi trong thân ({body.get('ma_don_vi')!r}) khác đường dẫn ({unit!r})")
    if body.get("cap") not in _LEVELS:
        problems.append(f"cap phải là một trong {', '.join(_LEVELS)}")
    try:
        parse_iso(str(body.get("thoi_diem_tong_hop")))
    except ValueError:
        problems.append("thoi_diem_tong_hop phải là thời điểm ISO-8601 có múi giờ")
    levels = body.get("theo_muc_do")
    if not isinstance(levels, list):
        problems.append("theo_muc_do phải là danh sách")
        levels = []
    seen: set[int] = set()
    for row in levels:
        if not isinstance(row, dict):
            problems.append("mỗi phần tử theo_muc_do phải là đối tượng")
            continue
        level = row.get("muc_do")
        if level not in (1, 2, 3, 4) or isinstance(level, bool) or level in seen:
            problems.append(f"muc_do {level!r} phải là 1..4 và không lặp lại")
            continue
        seen.add(level)
        bad = [name for name in _STATS_FIELDS if not _count(row.get(name))]
        if bad:
            problems.append(f"muc_do {level}: {', '.join(bad)} phải là số nguyên không âm")
            continue
        if row["da_giai_quyet"] != row["dung_han"] + row["qua_han"]:
            problems.append(f"muc_do {level}: da_giai_quyet phải bằng dung_han + qua_han")
        if row["truoc_han"] > row["dung_han"]:
            problems.append(f"muc_do {level}: truoc_han không được lớn hơn dung_han")
        if row["tiep_nhan_truc_tuyen"] > row["tiep_nhan"]:
            problems.append(f"muc_do {level}: tiep_nhan_truc_tuyen không được lớn hơn tiep_nhan")
        if row["qua_han_dang_xu_ly"] > row["dang_xu_ly"]:
            problems.append(f"muc_do {level}: qua_han_dang_xu_ly không được lớn hơn dang_xu_ly")
    catalogue = body.get("thu_tuc")
    if not isinstance(catalogue, dict) or not all(_count(catalogue.get(n)) for n in _CATALOGUE_COUNTS):
        problems.append(f"thu_tuc phải có {', '.join(_CATALOGUE_COUNTS)} là số nguyên không âm")
    return problems

