"""The privacy edge by allow-list: personal data under any name, at any depth, never leaves a connector.

The property test generates dossiers carrying names, ID numbers, phones and e-mails under arbitrary
field names (vendor spellings, camelCase, separators), inside lists of lists, and inside free text
with separators and ``+84`` prefixes, and checks every place the hub writes: raw records, canonical
events (the real normaliser), dead letters (edge and normaliser stage, and excerpts of unparseable
bodies), the log and the metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from connectors.motcua.connector import Dossiers, MotCuaConnector
from connectors.portal.connector import OnlineSubmissions, PortalCatalogue, PortalConnector
from connectors.qlvb.connector import DocumentEvents, QlvbConnector
from connectors.sdk import MemorySink, MemoryStateStore, SyncEngine
from connectors.sdk.edge import EXCERPT_CHARS, Edge, safe_excerpt
from connectors.sdk.engine import ConnectorMetrics
from connectors.sdk.fields import BY_KIND
from hub.config import ConfigError, ConnectorInstance, TopicSettings
from hub.deadletter import DeadLetter
from hub.privacy import hash_id_number, is_personal_field, redact_text
from hub.scenario.thanhhoa2021 import build_scenario
from hub.scenario.truth import GroundTruth
from hub.sync.outbox import portal_progress_row
from schemas.raw import RawRecord
from schemas.units import default_registry
from streams.normalize import Rejected, normalize
from tests.connectors.fakes import FakeMotCua
from tests.connectors.test_contract import MOTCUA, PORTAL, QLVB

KEY = b"edge-test-key"
REGISTRY = default_registry()

# --------------------------------------------------------------------------- generators

SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đỗ", "Bùi", "Đặng", "Ngô", "Trịnh", "Lương")
MIDDLE = ("Văn", "Thị", "Đức", "Minh", "Ngọc", "Thu", "Quang", "Thanh", "Hữu", "Xuân")
GIVEN = ("An", "Bình", "Cường", "Dũng", "Hương", "Lan", "Linh", "Phương", "Quân", "Trang", "Tuấn", "Yến")
SEPS = ("", " ", ".", "-")

names = st.builds(lambda a, b, c: f"{a} {b} {c}", st.sampled_from(SURNAMES), st.sampled_from(MIDDLE),
                  st.sampled_from(GIVEN))


def _grouped(digits: str, sep: str, sizes: tuple[int, ...]) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(digits[i:i + n])
        i += n
    return sep.join(p for p in out if p)


id_numbers = st.one_of(
    st.from_regex(r"0[1-9][0-9]{10}", fullmatch=True).flatmap(
        lambda d: st.sampled_from(SEPS).map(lambda s: _grouped(d, s, (3, 3, 3, 3)))),
    st.from_regex(r"[1-9][0-9]{8}", fullmatch=True).flatmap(
        lambda d: st.sampled_from(SEPS).map(lambda s: _grouped(d, s, (3, 3, 3)))),
)
phones = st.tuples(st.from_regex(r"(9[0-9]|3[2-9]|8[1-9])[0-9]{7}", fullmatch=True), st.sampled_from(SEPS),
                   st.sampled_from(("0", "+84", "84", "+84 ", "(+84) "))).map(
    lambda t: t[2] + _grouped(t[0], t[1], (3, 3, 3)))
emails = st.builds(lambda u, d: f"{u}@{d}.vn", st.from_regex(r"[a-z][a-z0-9.]{2,12}", fullmatch=True),
                   st.sampled_from(("gmail", "thanhhoa.gov", "yahoo")))
# Field names that are not on any allow-list: vendor words, any case and separator.
_WORDS = ("ho", "ten", "nguoi", "dai", "dien", "applicant", "name", "so", "cccd", "cmnd", "email", "phone",
          "sdt", "contact", "extra", "ghi", "chu", "info", "data", "x", "representative", "id", "number")
field_names = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=3).flatmap(
    lambda ws: st.sampled_from(("_", "-", "", "camel", "upper")).map(lambda style: (
        ws[0] + "".join(w.title() for w in ws[1:]) if style == "camel"
        else "_".join(ws).upper() if style == "upper" else style.join(ws)))
).filter(lambda n: BY_KIND["dossier"].lookup(n) is None)


@st.composite
def personal(draw: st.DrawFn) -> tuple[str, str]:
    """(kind, value) of one piece of personal data."""
    return draw(st.one_of(names.map(lambda v: ("name", v)), id_numbers.map(lambda v: ("id", v)),
                          phones.map(lambda v: ("phone", v)), emails.map(lambda v: ("email", v))))


_SENTENCES = {
    "name": ("Tiếp nhận hồ sơ của ông {}", "Chị {} bổ sung giấy tờ", "Người nộp: {}", "{} đã nhận kết quả"),
    "id": ("CCCD {} hợp lệ", "số CMND: {}", "Kiểm tra giấy tờ {}."),
    "phone": ("Gọi {} để hẹn", "ĐT: {}", "liên hệ qua số {}, chiều nay"),
    "email": ("gửi thư {} xác nhận", "email: {}"),
}


def nested(value: Any, depth: int, draw: st.DrawFn) -> Any:
    """``value`` wrapped in ``depth`` random containers (dicts under arbitrary names, lists, lists of lists)."""
    for _ in range(depth):
        kind = draw(st.sampled_from(("list", "dict", "listlist")))
        value = [value] if kind == "list" else [[value, 1]] if kind == "listlist" else {draw(field_names): value}
    return value


@st.composite
def dossiers(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A valid one-stop dossier with personal data planted everywhere, and the planted values."""
    planted: list[tuple[str, str]] = []
    row = FakeMotCua().put("H56.14767-210115-00077", "20210115093012", 3)
    row["QuaTrinhXuLy"] = [dict(r) for r in row["QuaTrinhXuLy"]]
    for _ in range(draw(st.integers(1, 6))):
        kind, value = draw(personal())
        planted.append((kind, value))
        where = draw(st.sampled_from(("top", "step", "result", "note", "department", "title")))
        if where == "top":
            row[draw(field_names)] = nested(value, draw(st.integers(0, 3)), draw)
        elif where == "step":
            row["QuaTrinhXuLy"][0][draw(field_names)] = nested(value, draw(st.integers(0, 2)), draw)
        elif where == "result":
            row["DanhSachGiayToKetQua"] = [[{draw(field_names): value, "MaGiayTo": "KQ01"}]]
        else:
            text = draw(st.sampled_from(_SENTENCES[kind])).format(value)
            if where == "note":
                row["QuaTrinhXuLy"][0]["NoiDungXuLy"] = text
            elif where == "department":
                row["QuaTrinhXuLy"][0]["PhongBanXuLy"] = text
            else:
                row["DanhSachGiayToKetQua"] = [{"TenGiayTo": text, "DuongDanTep": "https://x.vn/kq.pdf"}]
    # The known personal fields, in another spelling.
    for canonical, kind in (("ChuHoSo", "name"), ("SoGiayToChuHoSo", "id"), ("SoDienThoai", "phone")):
        value = str(row.pop(canonical))
        spelt = draw(st.sampled_from((canonical, canonical.lower(), canonical[0].lower() + canonical[1:],
                                      re.sub(r"(?<!^)(?=[A-Z])", "_", canonical).lower(),
                                      re.sub(r"(?<!^)(?=[A-Z])", "-", canonical).upper())))
        row[spelt] = value
        planted.append((kind, value))
    return row, planted


def leaks(text: str, planted: list[tuple[str, str]]) -> list[str]:
    """The planted values found in ``text`` (numbers compared by their digits, whatever the separators)."""
    found = []
    runs = [re.sub(r"\D", "", r) for r in re.findall(r"\d[\d .\-+()]*\d", text)]
    for kind, value in planted:
        if kind in ("id", "phone"):
            digits = re.sub(r"\D", "", value)
            # The number without its leading 0 / 84: found however it was prefixed or stored.
            core = digits[2:] if kind == "phone" and digits.startswith("84") else digits.removeprefix("0")
            if any(core in r for r in runs):
                found.append(f"{kind} {value!r}")
        elif value in text or (kind == "name" and value.upper() in text):
            found.append(f"{kind} {value!r}")
    return found


# --------------------------------------------------------------------------- helpers


def _stream(connector_class: Any, instance: ConnectorInstance, stream_class: Any) -> Any:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    connector = connector_class.from_instance(instance, http)
    return next(s for s in connector.stream_objects if isinstance(s, stream_class))


DOSSIERS = _stream(MotCuaConnector, MOTCUA, Dossiers)
EDGE = Edge(source="motcua", instance="motcua-14767", privacy_key=KEY, max_depth=32)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# --------------------------------------------------------------------------- the property


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(case=dossiers())
def test_personal_data_under_any_name_at_any_depth_reaches_nothing(
    case: tuple[dict[str, Any], list[tuple[str, str]]], caplog: pytest.LogCaptureFixture
) -> None:
    """Fails if a planted name, ID number, phone or e-mail appears in a raw record, the canonical
    event, a dead letter (edge, normaliser, excerpt), the log or the metrics."""
    row, planted = case
    caplog.set_level(logging.DEBUG)
    fake = FakeMotCua()
    fake.rows = {row["MaHoSo"]: row}
    # The same dossier without its key: refused at the edge, a dead letter.
    fake.rows["refused"] = {**row, "MaHoSo": "", "NgayCapNhat": "20210115093013"}
    registry = CollectorRegistry()

    async def cycle() -> tuple[MemorySink, str]:
        sink = MemorySink()
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
            connector = MotCuaConnector.from_instance(MOTCUA, http)
            engine = SyncEngine(connector, sink=sink, state_store=MemoryStateStore(), topics=TopicSettings(),
                                privacy_key=KEY, metrics=ConnectorMetrics(registry))
            await engine.run_once()
            return sink, _dump(engine.health())

    sink, health = asyncio.run(cycle())
    raws = [r for _, r in sink.records]
    assert [r.key for r in raws if r.kind == "dossier"] == [row["MaHoSo"]]
    places = {"raw records": _dump([r.model_dump(mode="json") for r in raws]), "health": health,
              "dead letters": "\n".join(d.value().decode() + d.key().decode() for _, d in sink.letters),
              "log": caplog.text, "metrics": generate_latest(registry).decode()}
    assert len(sink.letters) == 1, "the record without a key is one dead letter"
    dossier = next(r for r in raws if r.kind == "dossier")
    assert dossier.payload["IdHash"] == hash_id_number(str(next(v for k, v in planted[-3:] if k == "id")), KEY)
    event = normalize(dossier, REGISTRY)
    places["canonical event"] = event.model_dump_json()
    # The normaliser's dead letter of the same record (a wrong type): its payload is the raw record.
    bad = RawRecord.model_validate({**dossier.model_dump(), "payload": {**dossier.payload, "MucDo": ["x"]}})
    with pytest.raises(Rejected) as refused_there:
        normalize(bad, REGISTRY)
    letter = DeadLetter.make(stage="normalize", reason=refused_there.value.reason, detail=refused_there.value.detail,
                             source="motcua", payload=bad.model_dump(mode="json"))
    places["normaliser dead letter"] = letter.value().decode()
    # An unparseable body (cut anywhere): its excerpt.
    body = _dump({"error_code": "0", "data": [row]})
    for cut in (len(body) // 3, len(body) // 2, len(body) - 3):
        places[f"excerpt {cut}"] = safe_excerpt(body[:cut], DOSSIERS.allowed_fields()) or ""
    found = {where: f for where, text in places.items() if (f := leaks(text, planted))}
    assert not found, f"personal data in {found}"
    # And what the hub needs is still there.
    assert event.ma_ho_so == row["MaHoSo"]
    assert event.progress[0].status == 2


# --------------------------------------------------------------------------- the findings, one by one


def test_vendor_spellings_of_personal_fields_are_dropped_and_known_fields_renamed() -> None:
    record = {
        "maHoSo": "H56.14767-210115-00012", "PHIEN_BAN": 3, "ngay-cap-nhat": "20210115093012",
        "chuHoSo": "Nguyễn Văn A", "applicantName": "Nguyễn Văn A", "TenNguoiDaiDien": "Trần Thị B",
        "representative": {"fullName": "Trần Thị B", "idNumber": "038090001235"},
        "soCCCD": "038 090 001 234", "so_cmnd_nguoi_dai_dien": "123456789", "E-mail": "a@b.vn",
        "dienThoaiLienHe": "+84 912 345 678", "QuaTrinhXuLy": [[{"TrangThai": "2", "canBoXuLy": "Lê Văn C",
                                                                 "NoiDungXuLy": "gọi 0912.345.678"}]],
    }
    out = DOSSIERS.allowed_fields().apply(record, KEY)
    assert out == {
        "MaHoSo": "H56.14767-210115-00012", "PhienBan": 3, "NgayCapNhat": "20210115093012",
        "IdHash": hash_id_number("038090001234", KEY),
        "QuaTrinhXuLy": [[{"TrangThai": "2", "NoiDungXuLy": "gọi <phone>"}]],
    }


def test_qlvb_keeps_codes_and_masked_abstract_never_signer_or_drafter() -> None:
    stream = _stream(QlvbConnector, QLVB, DocumentEvents)
    record = {"id": 7, "loai": "KY_SO", "thoi_diem": "2021-01-16T10:02:11+07:00",
              "VanBan": {"so_ky_hieu": "15/QĐ-UBND", "ma_don_vi": "14767", "ky_so": "true",
                         "nguoi_ky": "Lê Văn C", "NguoiKy": "Lê Văn C", "nguoi_soan_thao": "Phạm Thị D",
                         "drafter": "Phạm Thị D", "signerName": "Lê Văn C",
                         "trich_yeu": "Cấp giấy khai sinh cho cháu Nguyễn Văn E, CCCD mẹ 038 090 001 234"},
              "HoSoLienQuan": {"ma_ho_so": "H56.14767-210115-00012", "nguoi_nop": "Nguyễn Văn F"}}
    out = stream.allowed_fields().apply(record, KEY)
    assert out["VanBan"] == {"so_ky_hieu": "15/QĐ-UBND", "ma_don_vi": "14767", "ky_so": "true",
                             "trich_yeu": "Cấp giấy khai sinh cho cháu <name>, CCCD mẹ <id>"}
    assert out["HoSoLienQuan"] == {"ma_ho_so": "H56.14767-210115-00012"}


def test_portal_keeps_payment_and_rating_not_the_citizen() -> None:
    stream = _stream(PortalConnector, PORTAL, OnlineSubmissions)
    record = {"ma_ho_so": "H56.1", "trang_thai": "DA_NOP", "cap_nhat_luc": "2021-01-19T10:00:00+07:00",
              "nguoi_nop": {"ho_ten": "Nguyễn Văn A", "email": "a@b.vn"}, "soDienThoai": "0912345678",
              "thanh_toan": {"so_tien": 8000, "hinh_thuc": "TRUC_TUYEN", "ten_chu_the": "NGUYEN VAN A"},
              "danh_gia": {"hai_long": False, "y_kien": "Anh Tuấn rất nhiệt tình", "thoi_diem": None}}
    out = stream.allowed_fields().apply(record, KEY)
    assert out == {"ma_ho_so": "H56.1", "trang_thai": "DA_NOP", "cap_nhat_luc": "2021-01-19T10:00:00+07:00",
                   "thanh_toan": {"so_tien": 8000, "hinh_thuc": "TRUC_TUYEN"},
                   "danh_gia": {"hai_long": False, "thoi_diem": None}}


@pytest.mark.parametrize(("text", "masked"), [
    ("gọi +84 912 345 678", "gọi <phone>"), ("gọi (+84) 912.345.678", "gọi <phone>"),
    ("gọi 84912345678", "gọi <phone>"), ("gọi 0912-345-678", "gọi <phone>"),
    ("CCCD 038 090 001 234", "CCCD <id>"), ("CMND 123.456.789", "CMND <id>"), ("CCCD038090001234", "CCCD<id>"),
    ("thư tới nguyen.van.a@gmail.com", "thư tới <email>"), ("ông Nguyễn Văn An đến", "ông <name> đến"),
    ("Bà Lan ký", "Bà <name> ký"),
])
def test_free_text_masking(text: str, masked: str) -> None:
    assert redact_text(text) == masked


@pytest.mark.parametrize("code", ["14768", "380", "1.003801", "1.003801.000.00.00.H56", "1.003801.000.00.00",
                                  "H56.14767-210115-00012", "000.00.14.H56-210115-0001", "20210115093012",
                                  "15/QĐ-UBND", "2021-01-15", "phí 150.000.000 đồng", "Bộ phận một cửa",
                                  "UBND phường Điện Biên", "Hồ sơ đã tiếp nhận"])
def test_masking_never_hides_codes(code: str) -> None:
    assert redact_text(f"hồ sơ {code}, chuyển xử lý") == f"hồ sơ {code}, chuyển xử lý"


def test_excerpt_is_masked_before_it_is_cut() -> None:
    """An ID number straddling the excerpt's end must not survive as its first digits."""
    for shift in range(12):
        body = "y" * (EXCERPT_CHARS - shift) + " 038090001234 tail"
        excerpt = safe_excerpt(body) or ""
        assert not re.search(r"0380|8090|0900", excerpt), (shift, excerpt[-20:])


def test_dead_letters_keep_no_free_text_unless_the_province_shares_it() -> None:
    row = FakeMotCua().put("H56.1", "20210115093012")
    record = {k: v for k, v in row.items() if k != "MaHoSo"}
    for share, expected in ((False, None), (True, "Tiếp nhận, gọi <phone>")):
        edge = Edge(source="motcua", instance="m", privacy_key=KEY, max_depth=32, share_free_text=share)
        _, letters = edge.process(DOSSIERS, [record])
        payload = letters[0].payload or {}
        assert payload["QuaTrinhXuLy"][0].get("NoiDungXuLy") == expected
        assert payload["QuaTrinhXuLy"][0]["TrangThai"] == "2"


def test_progress_push_sends_notes_only_when_the_province_asks() -> None:
    row = {"TrangThai": "4", "ThoiDiemXuLy": "20210115093012", "PhongBanXuLy": "Tư pháp",
           "NoiDungXuLy": "gọi <phone>, ông <name>"}
    assert portal_progress_row("H56.1", row)["NoiDungXuLy"] == ""
    assert portal_progress_row("H56.1", row)["PhongBanXuLy"] == "Tư pháp"
    assert portal_progress_row("H56.1", row, share_free_text=True)["NoiDungXuLy"] == row["NoiDungXuLy"]


def test_instance_can_extend_the_allow_list_but_never_with_personal_data() -> None:
    extended = ConnectorInstance.model_validate({**MOTCUA.model_dump(), "options": {
        "keep_fields": ["SoBienNhan", "QuaTrinhXuLy.MaPhongBan"], "free_text_fields": ["GhiChu"]}})
    stream = _stream(MotCuaConnector, extended, Dossiers)
    out = stream.allowed_fields().apply({"so_bien_nhan": "BN-1", "GhiChu": "gọi 0912345678",
                                         "QuaTrinhXuLy": [{"MaPhongBan": "TP", "TrangThai": "2"}]}, KEY)
    assert out == {"SoBienNhan": "BN-1", "GhiChu": "gọi <phone>",
                   "QuaTrinhXuLy": [{"MaPhongBan": "TP", "TrangThai": "2"}]}
    for personal_field in ("ChuHoSo", "QuaTrinhXuLy.nguoiXuLy", "email_lien_he"):
        bad = ConnectorInstance.model_validate({**MOTCUA.model_dump(), "options": {"keep_fields": [personal_field]}})
        with pytest.raises(ConfigError, match="personal data"):
            MotCuaConnector.config_class.from_instance(bad)


def test_no_allow_listed_field_looks_personal() -> None:
    """The allow-lists and the dead-letter deny-list agree: nothing the hub keeps is dropped again."""
    def walk(fields: Any) -> list[str]:
        out = []
        for declared, rule in fields._index.values():
            out.append(declared)
            if hasattr(rule, "_index"):
                out.extend(walk(rule))
        return out

    kept = {name for f in BY_KIND.values() for name in walk(f)} - {"SoGiayToChuHoSo", "SoCCCD", "SoCMND", "CCCD",
                                                                   "CMND", "SoGiayTo", "SoDinhDanh", "SoGiayToTuyThan"}
    assert not [n for n in kept if is_personal_field(n)]


# --------------------------------------------------------------------------- the scenario still counts the same


def _event(payload: dict[str, Any], kind: str, source: str) -> dict[str, Any]:
    rec = RawRecord.build(source=source, instance=f"{source}-14767", kind=kind, key="k", version="1",
                          payload=payload)
    try:
        dump = normalize(rec, REGISTRY).model_dump(mode="json")
    except Rejected as exc:
        return {"rejected": exc.reason}
    dump.pop("id_hash", None)
    for step in dump.get("progress", []):
        step.pop("note")
        step.pop("department")
    return dump


def test_the_scenario_normalises_the_same_through_the_allow_lists() -> None:
    """Every record of a (small) thanhhoa-2021 scenario gives the same canonical event with and without
    the edge (free text aside), so every figure it reproduces is unchanged; and none of its personal data passes."""
    scenario = build_scenario(seed=5, scale=0.02)
    pii = GroundTruth(scenario).personal_data()
    planted = ([("name", n) for n in pii.names] + [("id", i) for i in pii.id_numbers]
               + [("phone", p) for p in pii.phones])
    qlvb = _stream(QlvbConnector, QLVB, DocumentEvents)
    submissions = _stream(PortalConnector, PORTAL, OnlineSubmissions)
    catalogue = _stream(PortalConnector, PORTAL, PortalCatalogue)
    kept: list[Any] = []
    checked = 0
    for lc in scenario.dossiers:
        for i in range(len(lc.versions)):
            snap = lc.served(i)
            out = DOSSIERS.allowed_fields().apply(snap, KEY)
            assert _event(out, "dossier", "motcua") == _event(snap, "dossier", "motcua"), lc.ma_ho_so
            kept.append(out)
            checked += 1
        for update in lc.portal:
            out = submissions.allowed_fields().apply(update.item, KEY)
            assert _event(out, "portal", "portal") == _event(update.item, "portal", "portal")
            kept.append(out)
    for n, doc in enumerate(scenario.documents, 1):
        record = {"id": n, "loai": doc.loai, "thoi_diem": doc.at.isoformat(), "VanBan": dict(doc.van_ban),
                  "HoSoLienQuan": {"ma_ho_so": doc.ma_ho_so} if doc.ma_ho_so else None}
        out = qlvb.allowed_fields().apply(record, KEY)
        assert _event(out, "document", "qlvb") == _event(record, "document", "qlvb")
        kept.append(out)
    for unit in scenario.units:
        for row in scenario.catalogue_rows(unit.code):
            out = catalogue.allowed_fields().apply(row, KEY)
            assert _event(out, "catalogue", "portal") == _event(row, "catalogue", "portal")
    assert checked > 1000
    assert not leaks(_dump(kept)[:2_000_000], planted[:300])
