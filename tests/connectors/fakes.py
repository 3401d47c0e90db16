"""Fake sources for unit and contract tests: httpx.MockTransport handlers, no network.

Each fake follows contracts.md (paging semantics, envelopes, auth) and can be told to misbehave
through ``script``: a list of canned answers returned (in order) before normal service, e.g.
``[429, 503, "error_body", "reset"]``.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NAME = "Nguyễn Văn An"
CCCD = "038090001234"
PHONE = "0912345678"


def _canned(item: Any, request: httpx.Request, error_body: dict[str, Any]) -> httpx.Response:
    if item == "reset":
        raise httpx.ReadError("connection reset by peer", request=request)
    if item == "timeout":
        raise httpx.ReadTimeout("timed out", request=request)
    if item == "error_body":
        return httpx.Response(200, json=error_body)
    if isinstance(item, httpx.Response):
        return item
    headers = {"Retry-After": "0"} if item in (429, 503) else {}
    return httpx.Response(int(item), json={"error_code": str(item), "message": "fault"}, headers=headers)


class FakeMotCua:
    """One unit's one-stop system."""

    def __init__(self, unit: str = "14767", api_key: str = "k-14767", *, now: str = "20210115100000") -> None:
        self.unit = unit
        self.api_key = api_key
        self.now = datetime.strptime(now, "%Y%m%d%H%M%S").replace(tzinfo=TZ)
        self.rows: dict[str, dict[str, Any]] = {}   # MaHoSo -> visible snapshot
        self.script: list[Any] = []
        self.requests: list[httpx.Request] = []
        self.catalogue = [{"MaTTHC": "1.003560.000.00.00.H56", "TenTTHC": "Đăng ký khai sinh", "MucDo": 4,
                           "CoPhi": True, "KetQuaBanGiay": True, "HieuLucTu": "20200101000000", "HieuLucDen": ""}]
        stamp = "20210115093012"
        for i in range(1, 6):
            # Three dossiers share one second: the tie-breaker matters.
            self.put(f"H56.{unit}-210115-{i:05d}", stamp if i <= 3 else f"2021011509{31 + i:02d}00")

    def put(self, ma: str, stamp: str, version: int | None = None, **extra: Any) -> dict[str, Any]:
        old = self.rows.get(ma)
        row = {
            "MaHoSo": ma, "PhienBan": version or ((old["PhienBan"] + 1) if old else 1), "NgayCapNhat": stamp,
            "MaTTHC": "1.003560.000.00.00.H56", "TenTTHC": "Đăng ký khai sinh", "MaDonVi": self.unit,
            "MucDo": 4, "KenhThucHien": "2", "TrangThaiHoSo": "4", "NgayNopHoSo": "20210115081500",
            "NgayHenTra": "20210118170000", "NgayTra": "", "ChuHoSo": NAME, "SoGiayToChuHoSo": CCCD,
            "SoDienThoai": PHONE, "DanhSachGiayToKetQua": [],
            "QuaTrinhXuLy": [{"TrangThai": "2", "ThoiDiemXuLy": "20210115082010", "PhongBanXuLy": "Một cửa",
                              "NoiDungXuLy": f"Tiếp nhận, gọi {PHONE}"}],
            **extra,
        }
        self.rows[ma] = row
        return row

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        prefix = f"/donvi/{self.unit}/api/v1"
        if request.headers.get("X-Api-Key") != self.api_key:
            return httpx.Response(401, json={"error_code": "401", "message": "Sai X-Api-Key"})
        if self.script:
            return _canned(self.script.pop(0), request, {"error_code": "-1", "message": "Lỗi hệ thống"})
        path = request.url.path
        if path == prefix + "/health":
            return httpx.Response(200, json={"error_code": "0", "ma_don_vi": self.unit,
                                             "thoi_gian_may_chu": self.now.strftime("%Y%m%d%H%M%S")})
        if path == prefix + "/thutuc":
            return httpx.Response(200, json={"error_code": "0", "data": self.catalogue})
        if path == prefix + "/hoso/thaydoi":
            q = request.url.params
            tu, sau, limit = q["tu"], q.get("sau"), int(q.get("gioihan", "100"))
            ordered = sorted(self.rows.values(), key=lambda r: (r["NgayCapNhat"], r["MaHoSo"]))
            after = [r for r in ordered
                     if (r["NgayCapNhat"] >= tu if not sau else (r["NgayCapNhat"], r["MaHoSo"]) > (tu, sau))]
            return httpx.Response(200, json={"error_code": "0", "message": "", "con_nua": len(after) > limit,
                                             "data": after[:limit]})
        return httpx.Response(404, json={"error_code": "404", "message": "not found"})


def render_qlvb(events: list[dict[str, Any]], more: bool) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<DanhSachSuKien con_nua="{str(more).lower()}">']
    for e in events:
        lines.append(f'<SuKien id="{e["id"]}" loai="{e["loai"]}" thoi_diem="2021-01-16T10:02:11+07:00">')
        lines.append(f'<VanBan so_ky_hieu="15/QĐ-UBND" trich_yeu="Cấp giấy cho CCCD {CCCD}" ma_don_vi="14767" '
                     f'nguoi_ky="{NAME}" ky_so="true"/>')
        if e.get("ma_ho_so"):
            lines.append(f'<HoSoLienQuan ma_ho_so="{e["ma_ho_so"]}"/>')
        lines.append("</SuKien>")
    lines.append("</DanhSachSuKien>")
    return "\n".join(lines)


class FakeQlvb:
    """QLVB with HTTP Basic and ids with gaps."""

    def __init__(self, username: str = "dvc-hub", password: str = "pw") -> None:
        self.auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        ids = [1000001, 1000002, 1000005, 1000006, 1000010]  # gaps: rolled-back transactions
        self.events: list[dict[str, Any]] = [
            {"id": i, "loai": "KY_SO", "ma_ho_so": f"H56.14767-210115-{n:05d}" if n % 2 else None}
            for n, i in enumerate(ids, 1)
        ]
        self.script: list[Any] = []
        self.duplicate_tail = 0
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("Authorization") != self.auth:
            return httpx.Response(401, text="<Loi ma=\"401\"/>")
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, str) and item.startswith("<"):
                return httpx.Response(200, text=item, headers={"Content-Type": "application/xml"})
            return _canned(item, request, {})
        q = request.url.params
        tu_id, count = int(q.get("tu_id", "0")), int(q.get("so_luong", "100"))
        before = [e for e in self.events if e["id"] <= tu_id][-self.duplicate_tail:] if self.duplicate_tail else []
        after = [e for e in self.events if e["id"] > tu_id]
        page = (before + after)[:count]
        more = len(after) > count - len(before)
        return httpx.Response(200, text=render_qlvb(page, more), headers={"Content-Type": "application/xml"})


class FakePortal:
    """The portal behind LGSP: OAuth2 tokens, offset paging by cap_nhat_luc, an optional move while paging."""

    def __init__(self, client_id: str = "dvc-hub", secret: str = "s3cret", *, items: int = 7) -> None:
        self.basic = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        self.tokens: set[str] = set()
        self.token_fetches = 0
        self.unauthorized = 0
        self.base = datetime(2021, 1, 19, 10, 0, tzinfo=TZ)
        self.clock = self.base + timedelta(minutes=10)
        self.items: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        for i in range(items):
            self.upsert(f"H56.14767-210119-{i:05d}", self.base + timedelta(seconds=i // 2))
        self.move_on_page: int | None = None  # when page N (>=2) is requested, move the first item to the end
        self.moved: list[str] = []
        self.script: list[Any] = []
        self.catalogue = {"14767": [{"MaTTHC": "1.003560.000.00.00.H56", "TenTTHC": "Đăng ký khai sinh", "MucDo": 4}]}

    def upsert(self, ma: str, when: datetime) -> None:
        self.items[ma] = {"ma_ho_so": ma, "ma_tthc": "1.003560.000.00.00.H56", "ma_don_vi": "14767", "muc_do": 4,
                          "trang_thai": "DA_NOP", "thanh_toan": None, "danh_gia": None,
                          "cap_nhat_luc": when.isoformat(timespec="seconds")}
        if ma in self.order:
            self.order.remove(ma)
        self.order.append(ma)

    def revoke_all(self) -> None:
        self.tokens.clear()

    def envelope(self, response: Any) -> httpx.Response:
        return httpx.Response(200, json={"code": 200, "status": "OK", "correlationId": "c0", "response": response})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/oauth2/token":
            if request.headers.get("Authorization") != self.basic or b"grant_type=client_credentials" not in (
                request.content
            ):
                return httpx.Response(401, json={"error": "invalid_client"})
            self.token_fetches += 1
            token = f"t{self.token_fetches}"
            self.tokens.add(token)
            return httpx.Response(200, json={"access_token": token, "token_type": "Bearer", "expires_in": 3600})
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            self.unauthorized += 1
            return httpx.Response(401, json={"code": 401, "status": "Unauthorized"})
        if self.script:
            return _canned(self.script.pop(0), request, {"code": 500, "status": "Internal error", "response": None})
        q = request.url.params
        if path == "/api/v1/thutuc":
            return self.envelope({"du_lieu": self.catalogue.get(q.get("ma_don_vi", ""), [])})
        if path == "/api/v1/hoso-truc-tuyen":
            since = datetime.fromisoformat(q["tu"])
            page, size = int(q.get("trang", "1")), int(q.get("kich_thuoc", "50"))
            if self.move_on_page is not None and page == self.move_on_page:
                self.move_on_page = None
                first = self.order[0]
                self.clock += timedelta(seconds=1)
                self.upsert(first, self.clock)
                self.moved.append(first)
            window = [self.items[m] for m in self.order
                      if datetime.fromisoformat(self.items[m]["cap_nhat_luc"]) >= since]
            window.sort(key=lambda it: (datetime.fromisoformat(it["cap_nhat_luc"]),
                                        self.order.index(it["ma_ho_so"])))
            chunk = window[(page - 1) * size: page * size]
            return self.envelope({"tong_so": len(window), "trang": page, "du_lieu": chunk})
        return httpx.Response(404, json={"code": 404})


def dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)
