"""Property tests: counters always equal a recount; order never matters; normalisers never crash or leak."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from schemas.calendar import TZ
from schemas.events import DocumentEvent, DossierEvent, PortalEvent, level_from_raw
from streams.domain.aggregates import Aggregates, contribution_keys
from streams.domain.state import Event, State, apply, view
from streams.normalize import Rejected, normalize, normalize_motcua
from tests.domain.factories import REG, must, payload, raw

BASE = datetime(2020, 12, 1, 8, 0, tzinfo=TZ)
NOW = datetime(2021, 6, 1, 0, 0, tzinfo=TZ)
DOSSIERS = ("A", "B", "C", "D")
PARTITIONS = 3


def _part(ma: str) -> int:
    return DOSSIERS.index(ma) % PARTITIONS if ma in DOSSIERS else 0


def dossier_event(ma: str, version: int, seed: int) -> DossierEvent:
    """Content is a function of (ma, version, seed): a version always means the same snapshot."""
    r = random.Random(f"{ma}:{version}:{seed}")
    received = BASE + timedelta(days=r.randint(0, 120), hours=r.randint(0, 10))
    due = received + timedelta(days=r.randint(0, 40))
    status = r.choice((1, 2, 3, 4, 5, 6, 7, 8, 9, 10))
    end = received + timedelta(days=r.randint(0, 60), hours=r.randint(0, 12))
    level = r.choice((2, 3, 4))
    return DossierEvent(
        event_id=f"motcua:{ma}:{version}",
        source="motcua",
        ma_ho_so=ma,
        version=version,
        unit_code=r.choice(("14767", "380", "15856")),
        unit_tier="XA",
        procedure_code=r.choice(("P1", "P2")),
        level_raw=level,
        level=level_from_raw(level),
        channel=r.choice(("TRUC_TIEP", "TRUC_TUYEN", "BUU_CHINH")),
        status=status,
        received_at=received if r.random() < 0.9 else None,
        due_at=due if r.random() < 0.9 else None,
        finished_at=end if status in (9, 10) and r.random() < 0.8 else None,
        refused_at=end if status == 3 and r.random() < 0.5 else None,
        updated_at=end + timedelta(days=r.randint(0, 3)),
        paid_online=r.random() < 0.3,
        digitised=r.random() < 0.3,
        electronic_result=r.random() < 0.2,
        supplement_requests=r.choice((0, 0, 1, 2)),
    )


def doc_event(ma: str, n: int) -> DocumentEvent:
    kind = ("DANG_KY", "TRINH_KY", "KY_SO", "BAN_HANH", "CHUYEN_MOT_CUA")[n % 5]
    return DocumentEvent(
        event_id=f"qlvb:{ma}{n}", source="qlvb", ma_ho_so=ma, doc_event_id=n, kind=kind, at=BASE + timedelta(days=n)
    )


def portal_event(ma: str, n: int) -> PortalEvent:
    r = random.Random(f"p:{ma}:{n}")
    sat = r.choice((None, True, False))
    return PortalEvent(
        event_id=f"portal:{ma}:{n}",
        source="portal",
        ma_ho_so=ma,
        procedure_code="P1",
        unit_code="14767",
        portal_status=r.choice(("DA_NOP", "DA_CHUYEN_MOT_CUA", "DA_HUY")),
        paid_online=r.random() < 0.4,
        satisfied=sat,
        rated_at=BASE + timedelta(days=n) if sat is not None else None,
        updated_at=BASE + timedelta(days=r.randint(0, 5)),
    )


events = st.one_of(
    st.builds(dossier_event, st.sampled_from(DOSSIERS), st.integers(1, 6), st.just(7)),
    st.builds(doc_event, st.sampled_from(DOSSIERS), st.integers(0, 9)),
    st.builds(portal_event, st.sampled_from(DOSSIERS), st.integers(0, 6)),
)


def recount(states: dict[str, State]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for s in states.values():
        v = view(s)
        if v is not None:
            for unit, key in contribution_keys(v):
                out.setdefault(unit, Counter())[key] += 1
    return out


class CounterMachine(RuleBasedStateMachine):
    """Random events, replays, stale versions, reordering and crashes: totals == recount, always."""

    @initialize()
    def setup(self) -> None:
        self.states: dict[str, State] = {}
        self.agg = Aggregates(REG)
        self.history: list[Event] = []

    def _apply(self, ev: Event) -> None:
        ma = must(ev.ma_ho_so)
        old = self.states.get(ma)
        new = apply(old, ev)
        if new is None:
            return
        self.agg.apply_change(_part(ma), view(old), view(new))
        self.states[ma] = new

    @rule(ev=events)
    def event(self, ev) -> None:
        self.history.append(ev)
        self._apply(ev)

    @rule(i=st.integers(0, 1000))
    def replay(self, i: int) -> None:
        if self.history:
            self._apply(self.history[i % len(self.history)])

    @rule(p=st.integers(0, PARTITIONS - 1))
    def crash_partition(self, p: int) -> None:
        # the worker died: the partition's aggregates are rebuilt from its (changelog-restored) states
        self.agg.rebuild(p, [v for ma, s in self.states.items() if _part(ma) == p and (v := view(s)) is not None])

    @rule()
    def crash_worker(self) -> None:
        self.agg = Aggregates(REG)
        for p in range(PARTITIONS):
            self.crash_partition(p)

    @invariant()
    def totals_equal_recount(self) -> None:
        assert self.agg.totals() == recount(self.states)

    @invariant()
    def live_figures_match_views(self) -> None:
        views = [v for s in self.states.values() if (v := view(s)) is not None]
        assert sum(self.agg.open_now(NOW).values()) == sum(1 for v in views if v.is_open)
        overdue = sum(1 for v in views if v.is_open and v.due_ts is not None and v.due_ts < NOW.timestamp())
        assert sum(self.agg.overdue_now(NOW).values()) == overdue
        assert self.agg.dossier_count() == len(views)


CounterMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestCounterMachine = CounterMachine.TestCase


@settings(max_examples=80, deadline=None)
@given(data=st.data(), seed=st.integers(0, 10_000))
def test_any_order_gives_the_same_state_and_counts(data, seed):
    evs = data.draw(
        st.lists(
            st.one_of(
                st.builds(dossier_event, st.sampled_from(DOSSIERS), st.integers(1, 6), st.just(seed)),
                st.builds(doc_event, st.sampled_from(DOSSIERS), st.integers(0, 9)),
                st.builds(portal_event, st.sampled_from(DOSSIERS), st.integers(0, 6)),
            ),
            min_size=1,
            max_size=25,
        )
    )
    evs += data.draw(st.lists(st.sampled_from(evs), max_size=5))  # duplicates
    shuffled = data.draw(st.permutations(evs))

    def run(seq: list[Event]) -> tuple[dict[str, State], dict[str, Counter[str]]]:
        states: dict[str, State] = {}
        agg = Aggregates(REG)
        for ev in seq:
            ma = must(ev.ma_ho_so)
            old = states.get(ma)
            new = apply(old, ev)
            if new is not None:
                agg.apply_change(_part(ma), view(old), view(new))
                states[ma] = new
        return states, agg.totals()

    assert run(evs) == run(shuffled)


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**15),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["", "1", "2", "10", "20210115082010", "14767", "h1:x"]),
)
json_value = st.recursive(
    json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8
)
PII = {"ChuHoSo": "Lê Thị Bí Mật", "SoDienThoai": "0987654321", "SoGiayToChuHoSo": "038090009999"}
FIELDS = [
    *list(payload()),
    "IdHash",
    "TrangThai",
    "ma_don_vi",
    "loai",
    "id",
    "thoi_diem",
    "trang_thai",
    "cap_nhat_luc",
    "ma_ho_so",
    "thanh_toan",
    "danh_gia",
    "VanBan",
    "HoSoLienQuan",
    "MaTTHC",
]


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["dossier", "document", "portal", "catalogue"]),
    changes=st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=6),
    drop=st.lists(st.sampled_from(FIELDS), max_size=4),
    pii=st.booleans(),
)
def test_normalisers_only_reject_and_never_leak(kind, changes, drop, pii):
    p = payload(**changes)
    for f in drop:
        p.pop(f, None)
    if pii:
        p.update(PII)
    rec = raw(p, kind, {"dossier": "motcua", "document": "qlvb"}.get(kind, kind))
    try:
        ev = normalize(rec, REG)
    except Rejected as exc:
        rejected: Rejected | None = exc
    else:
        rejected = None
        dumped = ev.model_dump_json()
        for secret in PII.values():
            assert secret not in dumped
    if rejected is not None:
        assert rejected.reason != "unexpected", rejected.detail  # every bad input has a proper reason
        for secret in PII.values():
            assert secret not in rejected.detail


@settings(max_examples=100, deadline=None)
@given(
    status=st.sampled_from([1, 2, "3", "4", "5", 6, "7", 8, "9", "10"]),
    kenh=st.sampled_from(["", None, "1", "2", 3]),
    muc=st.sampled_from([1, 2, 3, "4"]),
    steps=st.integers(0, 5),
)
def test_valid_payloads_always_normalise(status, kenh, muc, steps):
    rows = [{"TrangThai": str(1 + i % 10), "ThoiDiemXuLy": "20210115082010"} for i in range(steps)]
    ev = normalize_motcua(raw(payload(TrangThaiHoSo=status, KenhThucHien=kenh, MucDo=muc, QuaTrinhXuLy=rows)), REG)
    assert ev.supplement_requests == sum(1 for r in rows if r["TrangThai"] == "5")
    assert DossierEvent.model_validate_json(ev.model_dump_json(exclude={"status_group"})) == ev


@given(st.datetimes(min_value=datetime(1976, 1, 1), max_value=datetime(2100, 1, 1)),
       st.sampled_from([0, 7 * 60, -5 * 60, 9 * 60 + 30]))
def test_fmt_compact_is_local_time_whatever_the_offset(naive, offset_min):
    """The fast path (a value already at +07:00 is not converted) agrees with zoneinfo's conversion."""
    from datetime import timezone

    from streams.normalize import fmt_compact

    dt = naive.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    assert fmt_compact(dt) == dt.astimezone(TZ).strftime("%Y%m%d%H%M%S")
