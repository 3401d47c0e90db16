import csv
import io
import json
from collections import Counter
from datetime import datetime

import pytest

from hub.config import Kpi766Settings, TargetSettings
from schemas.events import CatalogueEntry, Level
from schemas.figures import UnitFigures, merge_counts
from streams.domain.aggregates import Aggregates, Catalogue
from streams.domain.kpi import indicators, score_band, total_score
from streams.domain.report import build_report, merged_samples, render, stats_body
from streams.domain.state import apply, view
from tests.domain.factories import REG, dossier, must, t

KPI = Kpi766Settings()


def k(metric: str, level: str, channel: str, period: str, extra: str = "") -> str:
    return f"{metric}|{level}|{channel}|{period}|{extra}"


def test_indicators():
    c = Counter(
        {
            k("finished_early", "MOT_PHAN", "TRUC_TUYEN", "2021-03"): 5,
            k("finished_on_time", "MOT_PHAN", "TRUC_TIEP", "2021-03"): 3,
            k("finished_late", "MOT_PHAN", "TRUC_TIEP", "2021-03"): 2,
            k("open_end", "TOAN_TRINH", "TRUC_TUYEN", "2021-03"): 10,
            k("overdue_end", "TOAN_TRINH", "TRUC_TUYEN", "2021-03"): 4,
            k("received", "TOAN_TRINH", "TRUC_TUYEN", "2021-03"): 6,
            k("received", "TOAN_TRINH", "TRUC_TIEP", "2021-03"): 4,
            k("received", "MOT_PHAN", "TRUC_TIEP", "2021-03"): 10,
            k("paid_online", "TOAN_TRINH", "TRUC_TUYEN", "2021-03"): 2,
            k("fee_bearing", "TOAN_TRINH", "TRUC_TUYEN", "2021-03"): 5,
            k("received", "MOT_PHAN", "TRUC_TIEP", "2021-02"): 99,  # another period: ignored
        }
    )
    ind = indicators(c, "2021-03", KPI)
    assert (ind["2.1"].numerator, ind["2.1"].denominator) == (8 + 6, 20)
    assert ind["2.1"].score == pytest.approx(14 / 20 * 20)
    assert ind["3.0"].rate == pytest.approx(0.6)
    assert ind["3.0"].score == pytest.approx(12 * 0.6 / 0.8)
    assert ind["3.3"].rate == pytest.approx(6 / 20)
    assert ind["3.3"].score is None
    assert ind["3.6"].rate == pytest.approx(0.4)
    assert ind["3.6"].score == pytest.approx(10 * 0.5)
    assert ind["4.1"].rate is None
    assert ind["4.1"].score is None
    pts, mx, pct = total_score(ind.values())
    assert mx == 20 + 12 + 10
    assert pct == pytest.approx(100 * pts / mx)
    # range: flows summed, stock at the last month
    ind_r = indicators(c, ("2021-02", "2021-03"), KPI)
    assert ind_r["3.3"].denominator == 119


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (95, "Xuất sắc"),
        (90, "Xuất sắc"),
        (85, "Tốt"),
        (75, "Khá"),
        (60, "Trung bình"),
        (10, "Yếu"),
        (None, "Chưa có dữ liệu"),
    ],
)
def test_bands(score, band):
    assert score_band(score) == band


def _catalogue() -> Catalogue:
    rows = [("380", f"C3-{i}", 3) for i in range(41)] + [("380", f"C4-{i}", 4) for i in range(70)]
    for u in ("14767", "14755"):
        rows += [(u, f"W3-{i}", 3) for i in range(9)] + [(u, f"W4-{i}", 4) for i in range(32)]
    return Catalogue(
        CatalogueEntry(
            event_id=f"c{u}{p}",
            source="motcua",
            unit_code=u,
            procedure_code=p,
            level_raw=lvl,
            level=Level.TOAN_TRINH if lvl == 4 else Level.MOT_PHAN,
            valid_from="2020-01-01T00:00:00+07:00",
        )
        for u, p, lvl in rows
    )


def _merged() -> tuple[dict[str, Counter[str]], datetime]:
    # two partitions, as the workers publish them
    agg = Aggregates(REG)
    evs = [
        dossier(
            "A",
            unit="14767",
            level=3,
            channel="2",
            status=10,
            received=t(2021, 1, 5),
            due=t(2021, 1, 8, 17),
            finished=t(2021, 1, 7),
            proc="W3-0",
        ),
        dossier(
            "B",
            unit="14767",
            level=4,
            channel="2",
            status=10,
            received=t(2021, 2, 5),
            due=t(2021, 2, 8, 17),
            finished=t(2021, 2, 20),
            proc="W4-0",
        ),
        dossier(
            "C",
            unit="14767",
            level=4,
            channel="1",
            status=4,
            received=t(2021, 3, 5),
            due=t(2021, 3, 8, 17),
            updated=t(2021, 3, 5),
            proc="W4-1",
        ),
        dossier(
            "D",
            unit="380",
            level=3,
            channel="2",
            status=4,
            received=t(2021, 3, 25),
            due=t(2021, 4, 8, 17),
            updated=t(2021, 3, 25),
            proc="C3-0",
        ),
        dossier(
            "E",
            unit="14755",
            level=4,
            channel="2",
            status=9,
            received=t(2020, 10, 5),
            due=t(2020, 10, 8, 17),
            finished=t(2020, 10, 8, 9),
            proc="W4-0",
        ),
    ]
    now = t(2021, 4, 1, 0, 5)
    for i, ev in enumerate(evs):
        agg.apply_change(i % 2, None, view(apply(None, ev)))
    partials = [agg.unit_figures(p, u, now) for p in agg.partitions() for u in agg.units(p)]
    assert all(isinstance(x, UnitFigures) for x in partials)
    return merge_counts(partials), now


def test_report_tiers_levels_targets_and_renderings():
    merged, now = _merged()
    rep = build_report(merged, _catalogue(), REG, "2021-Q1", None, TargetSettings(), KPI, now=now)
    assert len(rep.rows) == 35
    dien_bien = next(r for r in rep.rows if r.code == "14767")
    l3, l4 = dien_bien.levels["MOT_PHAN"], dien_bien.levels["TOAN_TRINH"]
    assert (l3.received, l3.received_online, l3.finished_early) == (1, 1, 1)
    assert (l4.received, l4.received_online, l4.finished_late, l4.open, l4.overdue) == (2, 1, 1, 1, 1)
    assert dien_bien.offered["MOT_PHAN"] == 9
    assert dien_bien.offered["TOAN_TRINH"] == 32
    assert dien_bien.without_dossier == {"MOT_PHAN": 8, "TOAN_TRINH": 30}
    assert rep.city_desk.levels["MOT_PHAN"].received_online == 1
    assert rep.city_desk.offered["TOAN_TRINH"] == 70
    assert rep.wards.offered == {"KHONG_TRUC_TUYEN": 0, "MOT_PHAN": 9, "TOAN_TRINH": 32}  # distinct procedures
    assert rep.city.levels["ALL"].received == 4
    assert rep.city.levels["ALL"].received == rep.city_desk.levels["ALL"].received + rep.wards.levels["ALL"].received
    online = next(x for x in rep.targets if x.key == "online_share")
    assert online.actual == pytest.approx(3 / 4)
    assert online.met
    table = render(rep, "table")
    for label in (
        "Đơn vị",
        "Mức độ 3",
        "Mức độ 4",
        "Tiếp nhận",
        "Trực tuyến",
        "Đúng hạn",
        "Quá hạn",
        "Tỷ lệ trực tuyến",
        "Mục tiêu",
        "Điện Biên (14767)",
        "Toàn thành phố",
    ):
        assert label in table
    rows = list(csv.DictReader(io.StringIO(render(rep, "csv"))))
    db4 = next(r for r in rows if r["Mã đơn vị"] == "14767" and r["Mức độ"] == "Mức độ 4")
    assert (db4["Tiếp nhận"], db4["Trực tuyến"], db4["Quá hạn"], db4["Mục tiêu"]) == ("2", "1", "1", "≥ 50%")
    data = json.loads(render(rep, "json"))
    assert data["whole_city"]["levels"]["ALL"]["received"] == 4
    assert data["period"] == "2021-Q1"
    # 2020 (a year) and a month range
    year = build_report(merged, None, REG, "2020", None, TargetSettings(), KPI, now=now)
    assert year.city.levels["TOAN_TRINH"].received_online == 1
    rng = build_report(merged, None, REG, ("2020-09", "2021-03"), "14767", TargetSettings(), KPI, now=now)
    assert [r.code for r in rng.rows] == ["14767"]
    assert rng.city.levels["ALL"].received_online == 2
    with pytest.raises(ValueError, match="not in the unit registry"):
        build_report(merged, None, REG, "2021", "99999", TargetSettings(), KPI)
    with pytest.raises(ValueError, match="YYYY"):
        build_report(merged, None, REG, "2021-13", None, TargetSettings(), KPI)


def test_stats_body_matches_the_portal_contract():
    merged, now = _merged()
    body = stats_body("2021-Q1", must(REG.lookup("14767")), merged["14767"], _catalogue(), now)
    assert set(body) == {"ky", "ma_don_vi", "cap", "thoi_diem_tong_hop", "theo_muc_do", "thu_tuc"}
    assert body["cap"] == "XA"
    assert body["thoi_diem_tong_hop"] == "2021-04-01T00:05:00+07:00"
    m4 = next(x for x in body["theo_muc_do"] if x["muc_do"] == 4)
    assert m4 == {
        "muc_do": 4,
        "tiep_nhan": 2,
        "tiep_nhan_truc_tuyen": 1,
        "da_giai_quyet": 1,
        "dung_han": 0,
        "truoc_han": 0,
        "qua_han": 1,
        "dang_xu_ly": 1,
        "qua_han_dang_xu_ly": 1,
    }
    for x in body["theo_muc_do"]:
        assert x["da_giai_quyet"] == x["dung_han"] + x["qua_han"]
        assert x["truoc_han"] <= x["dung_han"]
    assert body["thu_tuc"] == {"muc_do_3": 9, "muc_do_4": 32, "khong_phat_sinh_ho_so": 38}
    assert stats_body("2021-Q1", must(REG.lookup("380")), merged["380"], None, now)["cap"] == "HUYEN"


def test_merged_samples():
    merged, now = _merged()
    samples = list(merged_samples(merged, _catalogue(), REG, now, KPI, periods=["2021-Q1"]))
    for spec, labels, _ in samples:
        assert set(labels) == set(spec.labels)
        assert REG.is_known(labels["unit"])
    names = {s[0].name for s in samples}
    assert {"dvchub_procedures_offered", "dvchub_kpi766_rate_ratio", "dvchub_procedures_without_dossier"} <= names
