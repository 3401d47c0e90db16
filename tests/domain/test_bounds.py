"""Input bounds at the edge: every date, version and code the normaliser accepts is plausible.

The class of problem: one dossier with an implausible value (a date in year 1 or 9999, a version
of twenty digits, a control character in a code) used to pass the normaliser and break a later
stage (the counters, the recovery, /metrics, Kafka keys). Each test below feeds every member of
the class it can enumerate, for every source mapper and every date field the events carry.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.config import BoundsSettings, Settings
from hub.deadletter import REASONS
from schemas.calendar import TZ
from schemas.events import CatalogueEntry, DocumentEvent, DossierEvent, PortalEvent, ProgressStep
from streams.bounds import InputBounds, date_fields
from streams.domain.aggregates import Aggregates, contribution_keys
from streams.domain.state import apply, view
from streams.normalize import Rejected, normalize
from tests.domain.factories import REG, payload, raw

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=TZ)
BOUNDS = InputBounds(BoundsSettings(), clock=lambda: NOW)
FAR = {"year 1": "00010102000000", "year 1999": "19991231235959", "year 2029": "20290101000000",
       "year 9999": "99991231235959"}
FAR_ISO = {"year 1": "0001-01-02T00:00:00+07:00", "year 1970": "1970-01-01T00:00:00+00:00",
           "year 2100": "2100-01-01T00:00:00+07:00", "year 9999": "9999-12-31T23:59:59-12:00"}


def rejected(rec: Any, bounds: InputBounds = BOUNDS) -> Rejected:
    with pytest.raises(Rejected) as info:
        normalize(rec, REG, bounds)
    assert info.value.reason in REASONS
    return info.value


def doc_payload(**over: Any) -> dict[str, Any]:
    return {"id": 7, "loai": "KY_SO", "thoi_diem": "2021-01-16T10:02:11+07:00",
            "VanBan": {"so_ky_hieu": "15/QĐ-UBND", "ma_don_vi": "14767", "ky_so": "true"},
            "HoSoLienQuan": {"ma_ho_so": "H56.14767-210115-00012"}, **over}


def portal_payload(**over: Any) -> dict[str, Any]:
    return {"ma_ho_so": "H56.14767-210115-00012", "ma_tthc": "1.003560.000.00.00.H56", "ma_don_vi": "14767",
            "muc_do": 4, "thoi_diem_nop": "2021-01-15T08:15:00+07:00", "trang_thai": "DA_CHUYEN_MOT_CUA",
            "thanh_toan": {"so_tien": 8000, "hinh_thuc": "TRUC_TUYEN", "thoi_diem": "2021-01-15T08:16:40+07:00"},
            "danh_gia": {"hai_long": False, "thoi_diem": "2021-01-19T10:00:00+07:00"},
            "cap_nhat_luc": "2021-01-19T10:00:00+07:00", **over}


def cat_payload(**over: Any) -> dict[str, Any]:
    return {"MaDonVi": "14767", "MaTTHC": "1.003560.000.00.00.H56", "MucDo": 3, "CoPhi": True,
            "KetQuaBanGiay": True, "HieuLucTu": "20200101000000", "HieuLucDen": "", **over}


def test_the_thanhhoa_2021_data_and_todays_dates_pass():
    for rec in (raw(payload()), raw(doc_payload(), "document", "qlvb"), raw(portal_payload(), "portal", "portal"),
                raw(cat_payload(), "catalogue")):
        normalize(rec, REG, BOUNDS)
    # The scenario's whole span (2020-2021) and due dates up to two years ahead.
    normalize(raw(payload(NgayTiepNhan="20200101000000", NgayHenTra="20281203000000")), REG, BOUNDS)


# Every date field of every source: far past and far future are dead letters naming the field.
DOSSIER_DATES = ("NgayCapNhat", "NgayNopHoSo", "NgayTiepNhan", "NgayHenTra", "NgayKetThucXuLy", "NgayTra",
                 "NgayTuChoi")


@pytest.mark.parametrize("field", [*DOSSIER_DATES, "QuaTrinhXuLy"])
@pytest.mark.parametrize("when", list(FAR))
def test_every_dossier_date_is_bounded(field: str, when: str):
    value = FAR[when]
    if field == "QuaTrinhXuLy":
        p = payload(QuaTrinhXuLy=[{"TrangThai": "2", "ThoiDiemXuLy": "20210115082010"},
                                  {"TrangThai": "4", "ThoiDiemXuLy": value}])
    else:
        p = payload(**{field: value}, TrangThaiHoSo="10")
    exc = rejected(raw(p))
    assert exc.reason == "out_of_range", exc
    assert f"year {int(value[:4])}" in exc.detail
    assert "2000-01-01 .. 2028-12-03" in exc.detail
    assert (field if field != "QuaTrinhXuLy" else "QuaTrinhXuLy[1].ThoiDiemXuLy") in exc.detail


@pytest.mark.parametrize("when", list(FAR_ISO))
@pytest.mark.parametrize(
    "make",
    [
        lambda v: raw(doc_payload(thoi_diem=v), "document", "qlvb"),
        lambda v: raw(portal_payload(cap_nhat_luc=v), "portal", "portal"),
        lambda v: raw(portal_payload(thoi_diem_nop=v), "portal", "portal"),
        lambda v: raw(portal_payload(thanh_toan={"so_tien": 1, "hinh_thuc": "TRUC_TUYEN", "thoi_diem": v}),
                      "portal", "portal"),
        lambda v: raw(portal_payload(danh_gia={"hai_long": True, "thoi_diem": v}), "portal", "portal"),
        lambda v: raw(cat_payload(HieuLucTu=v), "catalogue"),
        lambda v: raw(cat_payload(HieuLucDen=v), "catalogue"),
    ],
    ids=["qlvb.thoi_diem", "portal.cap_nhat_luc", "portal.thoi_diem_nop", "portal.thanh_toan", "portal.danh_gia",
         "catalogue.HieuLucTu", "catalogue.HieuLucDen"],
)
def test_every_document_portal_and_catalogue_date_is_bounded(make: Any, when: str):
    assert rejected(make(FAR_ISO[when])).reason == "out_of_range"


def test_the_bounds_check_every_date_field_each_event_model_declares():
    """A date field added to a model later is checked without a new line in the checker."""
    assert set(date_fields(DossierEvent)[0]) == {"submitted_at", "received_at", "due_at", "finished_at",
                                                  "returned_at", "refused_at", "updated_at"}
    assert date_fields(DossierEvent)[1] == ("progress",)
    ev = normalize(raw(payload()), REG, BOUNDS)
    assert isinstance(ev, DossierEvent)
    for model, sample in ((DossierEvent, ev), (ProgressStep, ev.progress[0])):
        for name in date_fields(model)[0]:
            bad = sample.model_copy(update={name: datetime(9999, 1, 1, tzinfo=TZ)})
            target = bad if model is DossierEvent else ev.model_copy(update={"progress": (bad,)})
            with pytest.raises(Rejected, match="out_of_range"):
                BOUNDS.check_event(target)
    for model in (DocumentEvent, PortalEvent, CatalogueEntry):
        assert date_fields(model)[0], model


def test_the_range_is_configurable():
    strict = InputBounds(BoundsSettings(earliest_date=date(2021, 1, 1), years_ahead=0), clock=lambda: NOW)
    normalize(raw(payload()), REG, strict)  # 2021-01-15: inside
    assert "2021-01-01 .. 2026-12-03" in rejected(raw(payload(NgayNopHoSo="20201231000000")), strict).detail
    assert rejected(raw(payload(NgayHenTra="20261204000000")), strict).reason == "out_of_range"
    with pytest.raises(ValueError, match="earliest_date"):
        BoundsSettings(earliest_date=date(1, 1, 1))
    with pytest.raises(ValueError, match="regular expression"):
        Settings.model_validate({"bounds": {"dossier_code_pattern": "[unclosed"}})


def test_the_upper_bound_follows_today():
    later = InputBounds(BoundsSettings(), clock=lambda: NOW + timedelta(days=400))
    rec = raw(payload(NgayHenTra="20290601000000"))
    assert rejected(rec).reason == "out_of_range"
    normalize(rec, REG, later)


@pytest.mark.parametrize("version", [0, -1, 1_000_001, 10**20, "9" * 30, "9" * 5000])
def test_versions_are_positive_and_bounded(version: Any):
    exc = rejected(raw(payload(PhienBan=version)))
    assert exc.reason == "out_of_range", exc
    assert "PhienBan" in exc.detail


@pytest.mark.parametrize(
    ("over", "kind"),
    [
        ({"LoaiDoiTuong": 2**70}, "dossier"),
        ({"DuocThanhToanTrucTuyen": -3}, "dossier"),
        ({"id": 2**64}, "document"),
        ({"thanh_toan": {"so_tien": 10**30, "hinh_thuc": "TRUC_TUYEN"}}, "portal"),
    ],
)
def test_other_integers_are_json_safe(over: dict[str, Any], kind: str):
    if kind == "dossier":
        rec = raw(payload(**over))
    elif kind == "document":
        rec = raw(doc_payload(**over), "document", "qlvb")
    else:
        rec = raw(portal_payload(**over), "portal", "portal")
    assert rejected(rec).reason == "out_of_range"


HOSTILE_CODES = [
    "H56.14767\n-210115-00012",  # a line break: a forged log line
    "H56.14767\r-1", "H56\x00-1", "H56\x1b[31m-1", "H56\x7f-1", "H56\u0085-1",  # C0, C1, ANSI, DEL, NEL
    "H56 14767-1", "H56\t1", "H56\u00a0-1", "H56\u2028-1", "H56\u200b-1", "H56\ufeff-1",  # odd whitespace
    "H56/../../etc", "H56:1:2", "H56'; DROP", "Hồ-sơ-1", "x" * 65,
]


@pytest.mark.parametrize("code", HOSTILE_CODES)
def test_dossier_codes_are_in_the_safe_charset_everywhere(code: str):
    for rec in (raw(payload(MaHoSo=code)), raw(doc_payload(HoSoLienQuan={"ma_ho_so": code}), "document", "qlvb"),
                raw(portal_payload(ma_ho_so=code), "portal", "portal")):
        exc = rejected(rec)
        assert exc.reason == "schema", exc
        # The detail never repeats the offending code (it may carry anything).
        assert code not in exc.detail


@pytest.mark.parametrize(
    ("field", "code"),
    [("MaDonVi", "147\n67"), ("MaDonVi", "147 67"), ("MaDonVi", "1\x0047"), ("MaTTHC", "1.003560\x1b.H56"),
     ("MaTTHC", "1.003560 H56"), ("MaLinhVuc", "H\u200bT"), ("MaLinhVuc", "H\x07T"), ("MaLinhVuc", "H T")],
)
def test_unit_procedure_and_field_codes_are_in_the_safe_charset(field: str, code: str):
    exc = rejected(raw(payload(**{field: code})))
    assert exc.reason == "schema", exc
    assert field in exc.detail


def test_surrounding_whitespace_is_trimmed_not_kept():
    ev = normalize(raw(payload(MaDonVi=" 14767\n", MaHoSo="\tH56.14767-210115-00012 ")), REG, BOUNDS)
    assert isinstance(ev, DossierEvent)
    assert (ev.unit_code, ev.ma_ho_so) == ("14767", "H56.14767-210115-00012")


def test_an_unknown_but_well_formed_unit_is_still_unknown_unit():
    assert rejected(raw(payload(MaDonVi="98765432"))).reason == "unknown_unit"


def test_free_text_loses_its_control_characters():
    p = payload(TenTTHC="Đăng ký\x1b[2J khai sinh\r\nFAKE LOG", QuaTrinhXuLy=[
        {"TrangThai": "2", "ThoiDiemXuLy": "20210115082010", "NoiDungXuLy": "Tiếp\x00nhận"}])
    ev = normalize(raw(p), REG, BOUNDS)
    assert isinstance(ev, DossierEvent)
    assert ev.procedure_name.isprintable()
    assert ev.progress[0].note.isprintable()


# --------------------------------------------------------------------------- what passes is safe downstream

_DAY0 = datetime(2000, 1, 1, tzinfo=TZ)
_SPAN_S = int((BOUNDS.latest - _DAY0).total_seconds())
_when = st.integers(0, _SPAN_S).map(lambda s: (_DAY0 + timedelta(seconds=s)).strftime("%Y%m%d%H%M%S"))
_maybe = st.one_of(st.just(""), _when)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.integers(1, 1_000_000), status=st.integers(1, 10), level=st.integers(1, 4),
    channel=st.sampled_from(["", "1", "2", "3"]), updated=_when, received=_maybe, due=_maybe, end=_maybe,
    refused=_maybe, steps=st.lists(st.tuples(st.integers(1, 10), _when), max_size=4),
    unit=st.sampled_from(["14767", "380", "14755"]),
)
def test_any_record_the_normaliser_accepts_flows_through_state_and_counters(**f: Any):
    """Property: within the bounds, apply/view/contributions/Aggregates never raise and stay bounded."""
    p = payload(PhienBan=f["version"], TrangThaiHoSo=str(f["status"]), MucDo=f["level"], KenhThucHien=f["channel"],
                NgayCapNhat=f["updated"], NgayTiepNhan=f["received"], NgayHenTra=f["due"],
                NgayKetThucXuLy=f["end"], NgayTra=f["end"], NgayTuChoi=f["refused"], MaDonVi=f["unit"],
                QuaTrinhXuLy=[{"TrangThai": str(s), "ThoiDiemXuLy": at} for s, at in f["steps"]])
    try:
        ev = normalize(raw(p), REG, BOUNDS)
    except Rejected:
        return
    state = apply(None, ev)
    v = view(state)
    assert v is not None
    keys = contribution_keys(v)
    # 2000-01 .. 2028-12 has 29 years of 17 periods: the most keys one dossier can ever make.
    assert len(keys) <= 29 * 17 * 4 + 6 * 3
    agg = Aggregates(REG)
    agg.apply_change(0, None, v)
    list(agg.prometheus_samples(NOW))
    agg.apply_change(0, v, None)
    assert agg.totals() == {}
    assert Counter(agg.open_now(NOW)) == Counter()


def test_the_bounds_accept_every_record_of_the_thanhhoa_2021_scenario():
    """Every served snapshot, portal item and catalogue row of the scenario (2020-2021) passes the defaults.

    Snapshots carry the applicant's name and phone (the connector edge drops them); the normaliser
    ignores them, so they do not matter here.
    """
    from hub.scenario.thanhhoa2021 import build_scenario

    sc = build_scenario(scale=0.05)
    bounds = InputBounds(BoundsSettings(), clock=lambda: NOW)
    refused: Counter[str] = Counter()
    n = 0
    records = [raw(lc.served(i)) for lc in sc.dossiers for i in range(len(lc.versions))]
    records += [raw(p.item, "portal", "portal") for lc in sc.dossiers for p in lc.portal]
    records += [raw({**row, "MaDonVi": u.code}, "catalogue") for u in sc.units for row in sc.catalogue_rows(u.code)]
    for rec in records:
        n += 1
        try:
            normalize(rec, REG, bounds)
        except Rejected as exc:
            refused[exc.reason] += 1
    assert n > 1000
    assert refused == Counter()
