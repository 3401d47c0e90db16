"""Simulator of the city's document management software, QLVB (contracts.md §2).

``GET /qlvb/api/sukien?tu_id=<n>&so_luong=<1..500>`` with HTTP Basic, answering the XML envelope::

    <?xml version="1.0" encoding="UTF-8"?>
    <DanhSachSuKien con_nua="true">
      <SuKien id="1000231" loai="KY_SO" thoi_diem="2021-01-16T10:02:11+07:00">
        <VanBan so_ky_hieu="15/QĐ-UBND" ... ma_don_vi="14767" ky_so="true"/>
        <HoSoLienQuan ma_ho_so="H56.14767-210115-00012"/>
      </SuKien>
    </DanhSachSuKien>

Traps, as the contract lists them: ids with gaps (made by :meth:`World.add_document_event`), the
same event served again at the start of the next page (``Faults.p_duplicate``), and hostile or
broken XML (``Faults.p_hostile_xml``): a DTD, a billion-laughs entity bomb, an external entity
pointing at a local file, or a body cut in the middle. A hostile answer still carries the real page
so that a lax parser would "work"; only a safe parser refuses it, and must then retry.

    >>> from datetime import datetime
    >>> from hub.simulators.clock import SimClock, TZ
    >>> from hub.simulators.world import World
    >>> app = make_qlvb_app(World(SimClock.manual(datetime(2021, 1, 16, tzinfo=TZ))), Faults(), "u", "p")
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import hdrs, web

from hub.simulators._http import (
    SIM_CONTEXT,
    SimContext,
    decode_basic_auth,
    fault_middleware,
    setup_sim_app,
    to_nfd,
)
from hub.simulators.faults import Faults
from hub.simulators.world import World

__all__ = ["HOSTILE_KINDS", "make_qlvb_app", "render_events"]

PATH = "/qlvb/api/sukien"
DEFAULT_COUNT = 100
MAX_COUNT = 500
#: The hostile answers ``p_hostile_xml`` picks from.
HOSTILE_KINDS = ("dtd", "billion_laughs", "external_entity", "truncated")
_CREDENTIALS = web.AppKey("qlvb_credentials", tuple)
_XML = "application/xml"


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Loi ma={_attr(code)} thong_bao={_attr(message)}/>\n'
    return web.Response(status=status, text=body, content_type=_XML, headers=headers)


def make_qlvb_app(world: World, faults: Faults, username: str, password: str) -> web.Application:
    """The QLVB event feed over ``world``'s document events, for one Basic-auth account."""
    app = web.Application(middlewares=[fault_middleware])
    # QLVB has no "200 with an error" answer in the contract, hence no error_body.
    setup_sim_app(app, SimContext("qlvb", world, faults, _error, None))
    app[_CREDENTIALS] = (username, password)
    app.router.add_get(PATH, _events)
    return app


def _authorised(request: web.Request) -> bool:
    username, password = request.app[_CREDENTIALS]
    auth = decode_basic_auth(request.headers.get(hdrs.AUTHORIZATION, ""))
    if auth is None:
        return False
    # Constant-time comparison: the simulator should not teach timing leaks by example.
    return hmac.compare_digest(auth[0].encode(), username.encode()) and hmac.compare_digest(
        auth[1].encode(), password.encode()
    )


async def _events(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, "401", "Yêu cầu xác thực HTTP Basic", {"WWW-Authenticate": 'Basic realm="QLVB"'})
    ctx = request.app[SIM_CONTEXT]
    raw_from = request.query.get("tu_id", "0")
    raw_count = request.query.get("so_luong", str(DEFAULT_COUNT))
    if not raw_from.isdigit():
        return _error(400, "400", f"tu_id phải là số nguyên không âm, nhận được {raw_from!r}")
    if not raw_count.isdigit() or not 1 <= int(raw_count) <= MAX_COUNT:
        return _error(400, "400", f"so_luong phải là số nguyên từ 1 đến {MAX_COUNT}, nhận được {raw_count!r}")
    tu_id, count = int(raw_from), int(raw_count)
    faults = ctx.faults
    duplicates: list[dict[str, Any]] = []
    if count > 1 and tu_id > 0 and faults.roll(faults.p_duplicate):
        # Re-serve the tail of the previous page; never the whole page, so a client still advances.
        duplicates = ctx.world.document_events_upto(tu_id, min(faults.randint(1, 3), count - 1))
        if duplicates:
            ctx.stats.injected["duplicate"] += 1
    fresh, more = ctx.world.document_events_after(tu_id, count - len(duplicates))
    if len(duplicates) + len(fresh) > count:  # cannot happen; keeps the page within so_luong
        fresh = fresh[: count - len(duplicates)]
    body = render_events(duplicates + fresh, more, nfd=faults.nfd)
    if faults.roll(faults.p_hostile_xml):
        kind = str(faults.choice(HOSTILE_KINDS))
        ctx.stats.injected[f"hostile_xml:{kind}"] += 1
        body = _hostile(body, kind, faults)
    return web.Response(body=body.encode("utf-8"), content_type=_XML, charset="utf-8")


def render_events(events: list[dict[str, Any]], more: bool, *, nfd: bool = False) -> str:
    """The contract's XML envelope for ``events`` (dicts as :meth:`World.document_events` gives)."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<DanhSachSuKien con_nua="{"true" if more else "false"}">']
    for event in events:
        van_ban: dict[str, str] = to_nfd(event["van_ban"]) if nfd else event["van_ban"]
        attrs = " ".join(f"{k}={_attr(v)}" for k, v in van_ban.items())
        lines.append(
            f'  <SuKien id="{int(event["id"])}" loai={_attr(event["loai"])} thoi_diem={_attr(event["thoi_diem"])}>'
        )
        lines.append(f"    <VanBan {attrs}/>")
        if event.get("ma_ho_so"):
            lines.append(f"    <HoSoLienQuan ma_ho_so={_attr(event['ma_ho_so'])}/>")
        lines.append("  </SuKien>")
    lines.append("</DanhSachSuKien>")
    return "\n".join(lines) + "\n"


def _attr(value: object) -> str:
    """A quoted XML attribute value, escaped (the stdlib escaper lives in a module linters flag)."""
    text = "".join(ch for ch in str(value) if ch in "\t\n\r" or ord(ch) >= 0x20)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    text = text.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    return f'"{text}"'


def _hostile(body: str, kind: str, faults: Faults) -> str:
    """``body`` turned into one of the hostile answers a safe parser must refuse."""
    declaration, _, rest = body.partition("\n")
    if kind == "truncated":
        cut = faults.randint(len(declaration) + 2, max(len(declaration) + 2, len(body) - 2))
        return body[:cut]
    if kind == "dtd":
        doctype = "<!DOCTYPE DanhSachSuKien [<!ELEMENT DanhSachSuKien ANY>]>"
    elif kind == "billion_laughs":
        entities = ['<!ENTITY lol0 "lol">'] + [
            f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
        ]
        doctype = f"<!DOCTYPE DanhSachSuKien [{''.join(entities)}]>"
        rest = rest.replace("</DanhSachSuKien>", "  <GhiChu>&lol9;</GhiChu>\n</DanhSachSuKien>", 1)
    else:  # external_entity: the parser would read a local file into the document
        doctype = '<!DOCTYPE DanhSachSuKien [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        rest = rest.replace("</DanhSachSuKien>", "  <GhiChu>&xxe;</GhiChu>\n</DanhSachSuKien>", 1)
    return f"{declaration}\n{doctype}\n{rest}"
