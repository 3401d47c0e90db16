import json
from collections import Counter
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily

from hub.metrics import DOSSIERS_FINISHED, DOSSIERS_OVERDUE_NOW, DOSSIERS_RECEIVED
from schemas.calendar import TZ
from schemas.events import CatalogueEntry, Level
from streams.domain.aggregates import Aggregates, Catalogue, contributions, timeliness
from streams.domain.state import DossierView, apply, view
from tests.domain.factories import REG, doc, dossier, must_view, portal, t

MA = "H56.14767-210115-00012"


def keys(v: DossierView, cat: Catalogue | None = None) -> set[str]:
    return {k for (_, k) in contributions(v, cat)}


def test_newest_version_wins_and_replays_change_nothing():
    v1, v2 = dossier(version=1), dossier(version=2, status=10, finished=t(2021, 1, 18, 10))
    s1 = apply(None, v1)
    assert s1 is not None
    assert apply(s1, v1) is None
    s2 = apply(s1, v2)
    assert must_view(s2).status == 10
    assert apply(s2, v1) is None  # stale
    assert apply(s2, v2) is None  # replay
    assert json.loads(json.dumps(s2)) == s2  # JSON-able, and JSON round trip is lossless


def test_document_before_dossier_is_kept_and_counted_once():
    s = apply(None, doc(MA, 1))
    assert view(s) is None
    assert apply(s, doc(MA, 2, "BAN_HANH")) is None  # monotonic: a second result document changes nothing
    assert apply(None, doc(MA, 3, "DANG_KY")) is None
    assert apply(None, doc(None, 4)) is None
    s = apply(s, dossier(status=10, finished=t(2021, 1, 18, 10)))
    v = must_view(s)
    assert v.electronic_result
    assert "electronic_result|TOAN_TRINH|TRUC_TUYEN|2021-01|" in keys(v)
    # a later snapshot without a result link keeps the QLVB fact
    s = apply(s, dossier(version=2, status=10, finished=t(2021, 1, 18, 10)))
    assert must_view(s).electronic_result


def test_portal_merges_payment_and_newest_rating():
    a = portal(MA, t(2021, 1, 15, 8, 16), paid=True)
    b = portal(MA, t(2021, 1, 19, 10), satisfied=False, rated=t(2021, 1, 19, 10))
    c = portal(MA, t(2021, 1, 20, 10), satisfied=True, rated=t(2021, 1, 20, 10))
    s = None
    for ev in (c, a, b):
        s = apply(s, ev) or s
    s = apply(s, dossier())
    v = must_view(s)
    assert v.paid_online
    assert v.satisfied is True
    assert v.portal_status == "DA_CHUYEN_MOT_CUA"
    assert apply(s, a) is None
    assert apply(s, b) is None


def test_timeliness_by_calendar_day_and_second_supplement():
    due = t(2021, 1, 18, 17)
    early = must_view(apply(None, dossier(status=10, due=due, finished=t(2021, 1, 17, 23))))
    same_day_after_hours = must_view(apply(None, dossier(status=9, due=due, finished=t(2021, 1, 18, 23))))
    late = must_view(apply(None, dossier(status=10, due=due, finished=t(2021, 1, 19, 8))))
    twice = must_view(apply(None, dossier(status=10, due=due, finished=t(2021, 1, 16, 8), supplements=2)))
    once = must_view(apply(None, dossier(status=10, due=due, finished=t(2021, 1, 16, 8), supplements=1)))
    assert [timeliness(v) for v in (early, same_day_after_hours, late, twice, once)] == [
        "early",
        "on_time",
        "late",
        "late",
        "early",
    ]
    # the end is the processed time (9) even when the result is returned later
    v = must_view(apply(None, dossier(status=10, due=due, finished=t(2021, 1, 18, 9), returned=t(2021, 1, 25, 9))))
    assert timeliness(v) == "on_time"
    assert "finished_on_time|TOAN_TRINH|TRUC_TUYEN|2021-Q1|" in keys(v)


def test_received_periods_and_flags():
    v = must_view(apply(None, dossier(paid=2, digitised=1)))
    k = keys(v)
    for per in ("2021-01", "2021-Q1", "2021"):
        assert f"received|TOAN_TRINH|TRUC_TUYEN|{per}|" in k
        assert f"paid_online|TOAN_TRINH|TRUC_TUYEN|{per}|" in k
        assert f"fee_bearing|TOAN_TRINH|TRUC_TUYEN|{per}|" in k
        assert f"digitised_reuse|TOAN_TRINH|TRUC_TUYEN|{per}|" in k
        assert f"procedure_dossiers|TOAN_TRINH|TRUC_TUYEN|{per}|1.003560.000.00.00.H56" in k
    # received 23:30 UTC on Jan 31 = Feb 1 local: the local date decides
    late_night = must_view(apply(None, dossier(received=datetime(2021, 2, 1, 0, 30, tzinfo=TZ))))
    assert "received|TOAN_TRINH|TRUC_TUYEN|2021-02|" in keys(late_night)


def test_refused_withdrawn_and_not_received():
    refused = must_view(apply(None, dossier(status=3, refused=t(2021, 1, 15, 10))))
    assert {k.split("|")[0] for k in keys(refused)} == {"refused"}
    withdrawn = must_view(apply(None, dossier(status=7, updated=t(2021, 3, 2))))
    kinds = {k.split("|")[0] for k in keys(withdrawn)}
    assert "withdrawn" in kinds
    assert "received" in kinds
    assert "withdrawn|TOAN_TRINH|TRUC_TUYEN|2021-03|" in keys(withdrawn)  # no 7-step: the snapshot time
    # open at the ends of January and February, not March
    assert "open_end|TOAN_TRINH|TRUC_TUYEN|2021-02|" in keys(withdrawn)
    assert "open_end|TOAN_TRINH|TRUC_TUYEN|2021-03|" not in keys(withdrawn)


def test_open_end_stored_until_as_of_and_live_after():
    due = t(2021, 2, 10, 17)
    v = must_view(apply(None, dossier(status=4, due=due, updated=t(2021, 2, 3))))
    k = keys(v)
    assert "open_end|TOAN_TRINH|TRUC_TUYEN|2021-01|" in k
    assert "overdue_end|TOAN_TRINH|TRUC_TUYEN|2021-01|" not in k
    assert not any("2021-02" in x or "Q1" in x for x in k if x.startswith("open_end"))
    agg = Aggregates(REG)
    agg.apply_change(0, None, v)
    c = agg.unit_counts(0, "14767", t(2021, 4, 15))
    assert c["open_end|TOAN_TRINH|TRUC_TUYEN|2021-01|"] == 1
    assert c["open_end|TOAN_TRINH|TRUC_TUYEN|2021-02|"] == 1  # live: open at the end of Feb, past due then
    assert c["overdue_end|TOAN_TRINH|TRUC_TUYEN|2021-02|"] == 1
    assert c["open_end|TOAN_TRINH|TRUC_TUYEN|2021-Q1|"] == 1
    assert c["open_end|TOAN_TRINH|TRUC_TUYEN|2021-04|"] == 1  # the current month: open now
    assert c["open_end|TOAN_TRINH|TRUC_TUYEN|2021-Q2|"] == 1
    assert c["open_end|TOAN_TRINH|TRUC_TUYEN|2021|"] == 1
    assert "open_end|TOAN_TRINH|TRUC_TUYEN|2021-05|" not in c
    # overdue in the current month only once now is past the due time
    c2 = agg.unit_counts(0, "14767", t(2021, 2, 5))
    assert c2["open_end|TOAN_TRINH|TRUC_TUYEN|2021-02|"] == 1
    assert c2["overdue_end|TOAN_TRINH|TRUC_TUYEN|2021-02|"] == 0
    assert agg.overdue_now(t(2021, 2, 5)) == {}
    assert agg.overdue_now(t(2021, 2, 11)) == {("14767", "XA", "TOAN_TRINH", "TRUC_TUYEN"): 1}
    assert agg.open_now(t(2021, 2, 11)) == {("14767", "XA", "TOAN_TRINH", "TRUC_TUYEN"): 1}
    fig = agg.unit_figures(0, "14767", t(2021, 4, 15))
    assert fig.unit_tier == "XA"
    assert fig.counts == dict(c)


def test_apply_change_subtracts_old_and_reports_changed_units():
    agg = Aggregates(REG)
    a = must_view(apply(None, dossier(version=1)))
    b = must_view(apply(None, dossier(version=2, unit="380", status=10, finished=t(2021, 1, 16))))
    assert agg.apply_change(3, None, a) == {"14767"}
    assert agg.apply_change(3, a, b) == {"14767", "380"}
    assert "14767" not in agg.totals()
    assert agg.totals()["380"] == Counter({k: 1 for (_, k) in contributions(b)})
    assert agg.open_now(t(2021, 2, 1)) == {}
    agg.drop_partition(3)
    assert agg.totals() == {}


def test_catalogue_levels_over_time_and_without_dossier():
    def entry(
        proc: str,
        lvl: int,
        frm: str,
        to: str | None = None,
        fee: bool = False,
        paper: bool = False,
        unit: str = "14767",
    ) -> CatalogueEntry:
        return CatalogueEntry(
            event_id=f"c:{proc}:{frm}",
            source="motcua",
            unit_code=unit,
            procedure_code=proc,
            level_raw=lvl,
            level=Level.TOAN_TRINH if lvl == 4 else Level.MOT_PHAN,
            has_fee=fee,
            paper_result=paper,
            valid_from=frm,
            valid_to=to,
        )

    cat = Catalogue(
        [
            entry("P1", 3, "2020-01-01T00:00:00+07:00", "2021-03-15T00:00:00+07:00", fee=True),
            entry("P1", 4, "2021-03-15T00:00:00+07:00", paper=True),
            entry("P2", 3, "2020-01-01T00:00:00+07:00"),
            entry("P3", 2, "2020-01-01T00:00:00+07:00"),
        ]
    )
    d = datetime(2021, 3, 14).date()
    assert cat.offered("14767", d)[Level.MOT_PHAN] == 2
    assert cat.offered("14767", datetime(2021, 3, 15).date())[Level.TOAN_TRINH] == 1
    assert cat.has_fee("14767", "P1", d)
    assert not cat.has_fee("14767", "P1", datetime(2021, 3, 20).date())
    assert cat.has_fee("380", "P1", d)  # another unit's procedure: the procedure's own row decides
    assert not cat.add(entry("P2", 3, "2020-01-01T00:00:00+07:00"))  # replay: no change
    counts = Counter({"procedure_dossiers|MOT_PHAN|TRUC_TUYEN|2021-03|P2": 1})
    assert cat.without_dossier("14767", "2021-03", counts) == {Level.MOT_PHAN: 0, Level.TOAN_TRINH: 1}
    assert cat.without_dossier("14767", "2021-02", counts) == {Level.MOT_PHAN: 2, Level.TOAN_TRINH: 0}
    # fee-bearing and paper-result figures use the catalogue; changes mark partitions for a rebuild
    agg = Aggregates(REG, cat)
    v = must_view(apply(None, dossier(proc="P1", status=10, received=t(2021, 3, 10), finished=t(2021, 3, 16))))
    agg.apply_change(0, None, v)
    tot = agg.totals()["14767"]
    assert tot["fee_bearing|TOAN_TRINH|TRUC_TUYEN|2021-03|"] == 1
    # Filed (received) on 03-10 under the row without a paper result, finished under the new one:
    # the row it was filed under decides.
    assert tot["paper_result_procedure|TOAN_TRINH|TRUC_TUYEN|2021-03|"] == 0
    late = must_view(apply(None, dossier("L", proc="P1", status=10, received=t(2021, 3, 15, 9),
                                         finished=t(2021, 3, 16))))
    agg.apply_change(0, None, late)
    assert agg.totals()["14767"]["paper_result_procedure|TOAN_TRINH|TRUC_TUYEN|2021-03|"] == 1
    agg.apply_change(0, late, None)
    cat.add(entry("P1", 3, "2020-01-01T00:00:00+07:00", "2021-03-15T00:00:00+07:00", fee=False))
    assert agg.stale_partitions() == [0]
    agg.rebuild(0, [v])
    assert agg.stale_partitions() == []
    assert agg.totals()["14767"]["fee_bearing|TOAN_TRINH|TRUC_TUYEN|2021-03|"] == 0


def test_prometheus_samples_bounded_labels():
    agg = Aggregates(REG)
    agg.apply_change(
        0, None, must_view(apply(None, dossier(status=10, due=t(2021, 1, 18, 17), finished=t(2021, 1, 18))))
    )
    agg.apply_change(1, None, must_view(apply(None, dossier("B", due=t(2021, 1, 18, 17)))))
    samples = list(agg.prometheus_samples(t(2021, 1, 20)))
    fams: dict[str, GaugeMetricFamily] = {}
    for spec, labels, value in samples:
        assert set(labels) == set(spec.labels), spec.name
        fam = fams.setdefault(spec.name, GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels)))
        fam.add_metric([labels[k] for k in spec.labels], value)
    rec = [s for s in samples if s[0] is DOSSIERS_RECEIVED and s[1]["period"] == "2021-01"]
    assert rec[0][2] == 2.0
    assert rec[0][1]["period_kind"] == "month"
    assert rec[0][1]["tier"] == "XA"
    fin = [s for s in samples if s[0] is DOSSIERS_FINISHED and s[1]["period"] == "2021"]
    assert fin[0][1]["timeliness"] == "on_time"
    over = [s for s in samples if s[0] is DOSSIERS_OVERDUE_NOW]
    assert over[0][2] == 1.0
