"""No single record can stop, fool or expose the worker: state/figures atomic, no zombie, bounded series.

In-process (memory store, no broker): the state agent's handler with forged canonical records, the
rebuild with rows no current hub would write, every kind of faust callback under the shared guard,
and /metrics under hostile input.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import generate_latest

from hub.config import Settings
from hub.deadletter import REASONS, DeadLetter
from hub.metrics import (
    DOSSIERS_FINISHED,
    DOSSIERS_OPEN,
    DOSSIERS_OPEN_NOW,
    DOSSIERS_OVERDUE_NOW,
    DOSSIERS_RECEIVED,
    DOSSIERS_REFUSED,
    DOSSIERS_WITHDRAWN,
)
from schemas.calendar import TZ
from schemas.events import Channel, DossierEvent
from streams import web
from streams.agents import dossier_state
from streams.app import create_app, runtime_of
from streams.collector import to_families
from streams.domain.aggregates import Aggregates
from streams.domain.periods import metric_window
from streams.domain.state import DossierView
from streams.guard import WorkerFailedError, exit_on_error
from streams.topics import encode_canonical

from .gen import T0, motcua, raw
from .test_agents import FakeEvent, Sent, canonical_of, until

MA = "H56.14767-210104-00001"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=TZ)


@pytest.fixture
def rt(monkeypatch: pytest.MonkeyPatch) -> Any:
    app = create_app(Settings())
    app.finalize()
    app.flow_control.resume()
    runtime = runtime_of(app)
    runtime.sink = Sent()
    runtime.recover_hooks = list(runtime.dossiers._recover_callbacks)  # faust's table keeps them there
    runtime.dossiers, runtime.catalogue_table, runtime.ready, runtime.active = {}, {}, True, {0}
    runtime.crashes = []

    async def crash(reason: BaseException) -> None:  # what app.crash is asked, instead of stopping the test
        runtime.crashes.append(reason)

    monkeypatch.setattr(app, "crash", crash)
    return runtime


def good(version: int = 1, status: int = 4) -> bytes:
    return canonical_of(raw(motcua(MA, "14767", version, status, proc="1.001.H56", level=4, channel="2",
                                   received=T0, due=T0 + timedelta(days=3), end=T0 + timedelta(days=1),
                                   updated=T0 + timedelta(hours=version))))


def forged(**changes: Any) -> bytes:
    """A canonical event the normaliser would refuse, produced straight to the canonical topic."""
    ev = DossierEvent.model_validate_json(good())
    return encode_canonical(ev.model_copy(update=changes))


def letters(rt: Any) -> list[DeadLetter]:
    return [DeadLetter.parse(v) for _, v, _, _ in rt.sink.on(rt.topics.dead_letter.get_topic_name())]


def figures(rt: Any) -> dict[str, dict[str, int]]:
    return {u: dict(c) for u, c in rt.aggregates.totals().items()}


# --------------------------------------------------------------------------- the state agent


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"due_at": datetime(9999, 12, 31, tzinfo=TZ)}, "out_of_range"),
        ({"received_at": datetime(1, 1, 2, tzinfo=TZ)}, "out_of_range"),
        ({"updated_at": datetime(2200, 1, 1, tzinfo=TZ), "status": 10}, "out_of_range"),
        ({"version": 10**15}, "out_of_range"),
        ({"ma_ho_so": "H56\n-forged"}, "schema"),
        ({"unit_code": "99999"}, "unknown_unit"),
    ],
)
async def test_a_forged_canonical_event_is_a_dead_letter_and_changes_nothing(rt, changes, reason):
    await dossier_state.handle(rt, FakeEvent(good(1), offset=1))
    table, counts = dict(rt.dossiers), figures(rt)
    await dossier_state.handle(rt, FakeEvent(forged(**{"version": 2, **changes}), offset=2))
    [letter] = letters(rt)
    assert (letter.stage, letter.reason, letter.offset) == ("state", reason, 2)
    assert rt.dossiers == table
    assert figures(rt) == counts
    await dossier_state.handle(rt, FakeEvent(good(3, status=10), offset=3))  # the next good event goes on
    assert orjson.loads(rt.dossiers[MA.encode()])["s"]["s"][0] == 3


async def test_a_change_the_figures_cannot_take_leaves_table_and_figures_unchanged(rt, monkeypatch):
    """Everything that can raise runs before the table write: no row the figures never saw."""
    await dossier_state.handle(rt, FakeEvent(good(1), offset=1))
    table, counts = dict(rt.dossiers), figures(rt)

    def broken(*_: Any) -> Any:
        raise ValueError("year 10000 is out of range")

    for target in ("streams.domain.aggregates.contribution_keys", "streams.agents.dossier_state.outbox_record"):
        with monkeypatch.context() as m:
            m.setattr(target, broken)
            await dossier_state.handle(rt, FakeEvent(good(2, status=10), offset=2))
        assert rt.dossiers == table, target
        assert figures(rt) == counts, target
    assert [d.reason for d in letters(rt)] == ["unexpected", "unexpected"]
    # and the event, once it can be counted, is: nothing was half-applied
    await dossier_state.handle(rt, FakeEvent(good(2, status=10), offset=2))
    rebuilt = figures(rt)
    rt.rebuild({0})
    assert figures(rt) == rebuilt
    assert rt.crashes == []


# --------------------------------------------------------------------------- rebuild and recovery


def _bad_rows(rt: Any) -> None:
    """Rows an older hub (before the bounds) or a forged changelog record left in the table."""
    state = orjson.loads(rt.dossiers[MA.encode()])["s"]
    future = dict(state)
    s = list(future["s"])
    s[6], s[9] = 10, 253402300800 + 86400 * 400  # finished in year 10001: its periods cannot be computed
    future["s"] = s
    rt.dossiers[b"H56.14767-OLD-1"] = orjson.dumps({"p": 0, "o": 41, "s": {**future, "k": "H56.14767-OLD-1"}})
    rt.dossiers[b"H56.14767-OLD-2"] = b"{not json"
    rt.dossiers[b"H56.14767-OLD-3"] = orjson.dumps({"p": 0, "o": 43, "s": {"k": "x", "s": [1, 2]}})
    rt.catalogue_table[b"0|14767|P|x"] = orjson.dumps({"p": 0, "o": 44, "e": {"unit_code": "14767"}})


async def test_the_rebuild_skips_and_dead_letters_rows_it_cannot_count(rt):
    await dossier_state.handle(rt, FakeEvent(good(1), offset=1))
    counts = figures(rt)
    _bad_rows(rt)
    rt.ready = False
    rt.rebuild({0})  # raised ValueError before: the worker never got ready
    assert rt.ready
    assert figures(rt) == counts
    assert rt.aggregates.dossier_count() == 1
    assert rt.skipped_rows == 4
    assert await rt.publish_partials(full=True) >= 1  # figures are published; the letters go out first
    dead = letters(rt)
    assert sorted((d.stage, d.offset or -1) for d in dead) == [("state", -1), ("state", 41), ("state", 43),
                                                              ("state", 44)]
    assert {d.reason for d in dead} == {"unexpected"}
    assert all("Send the dossier again" in d.detail for d in dead)
    rt.rebuild({0})  # a later rebuild (catalogue change, rebalance) counts them but reports nothing new
    await rt.flush_dead_letters()
    assert len(letters(rt)) == 4
    assert rt.crashes == []


async def test_the_recovery_hook_rebuilds_past_bad_rows_and_exits_on_anything_else(rt, monkeypatch):
    [hook] = rt.recover_hooks
    monkeypatch.setattr(rt.app.assignor, "assigned_actives",
                        lambda: {type("TP", (), {"topic": rt.topics.canonical.get_topic_name(), "partition": 0})()})
    await dossier_state.handle(rt, FakeEvent(good(1), offset=1))
    _bad_rows(rt)
    rt.ready = False
    await hook()
    assert rt.ready
    assert rt.crashes == []
    assert len(rt.pending_dead_letters) == 4  # sent by the partials timer, not from inside the recovery
    await rt.callbacks["publish_partials"]()
    assert len(letters(rt)) == 4

    def broken(_: Any) -> None:
        raise RuntimeError("store closed")

    monkeypatch.setattr(rt, "rebuild", broken)
    await hook()  # faust would swallow this and leave the worker never ready
    [reason] = rt.crashes
    assert isinstance(reason, WorkerFailedError)
    assert "table recovery hook" in str(reason)
    assert "RuntimeError" in str(reason)


# --------------------------------------------------------------------------- the guard, per callback kind


async def test_a_timer_that_fails_exits_the_worker_but_a_broker_timeout_does_not(rt, monkeypatch):
    publish = rt.callbacks["publish_partials"]

    async def timeout(**_: Any) -> int:
        raise KafkaTimeoutError

    monkeypatch.setattr(rt, "publish_partials", timeout)
    await publish()
    assert rt.crashes == []

    async def bug(**_: Any) -> int:
        raise KeyError("H56.14767-210104-00001")

    monkeypatch.setattr(rt, "publish_partials", bug)
    await publish()  # was: logged and retried every tick, forever, publishing nothing
    [reason] = rt.crashes
    assert isinstance(reason, WorkerFailedError)
    assert str(reason).startswith("timer publish_partials failed: KeyError")

    async def lag() -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(rt, "refresh_lag", lag)
    await rt.callbacks["measure_lag"]()
    assert "timer measure_lag failed: ZeroDivisionError" in str(rt.crashes[-1])


async def test_an_agent_that_fails_outside_its_per_record_handler_exits_the_worker(rt, monkeypatch):
    async def broken() -> None:
        raise RuntimeError("producer buffer closed")

    monkeypatch.setattr(rt, "settle_writes", broken)
    agent = rt.app.agents["dossier_state"]
    async with agent.test_context() as ctx:
        await ctx.put(key=MA.encode(), value=good(1), wait=False)
        await until(lambda: rt.crashes)
    [reason] = rt.crashes
    assert isinstance(reason, WorkerFailedError)
    assert str(reason) == "agent dossier_state failed: RuntimeError: producer buffer closed"

    rt.crashes.clear()
    monkeypatch.setattr("streams.agents.normalizer.handle", lambda *_: (_ for _ in ()).throw(ValueError("x")))
    agent = rt.app.agents["normalize_motcua"]
    async with agent.test_context() as ctx:
        await ctx.put(key=b"k", value=b"{}", wait=False)
        await until(lambda: rt.crashes)
    assert str(rt.crashes[0]).startswith("agent normalize_motcua failed: ValueError")


class FakeWeb:
    def text(self, body: str, status: int = 200) -> tuple[int, str]:
        return status, body

    def bytes(self, body: bytes, content_type: str = "") -> tuple[int, str]:
        return 200, body.decode()

    def json(self, body: Any, status: int = 200) -> tuple[int, Any]:
        return status, body


class FakeApp:
    def __init__(self) -> None:
        self.views: dict[str, Any] = {}
        self.crashes: list[BaseException] = []

    def page(self, path: str) -> Any:
        def mount(fun: Any) -> Any:
            self.views[path] = fun
            return fun
        return mount

    async def crash(self, reason: BaseException) -> None:
        self.crashes.append(reason)


async def test_a_web_view_that_fails_answers_500_and_exits_the_worker(rt, monkeypatch):
    fake = FakeApp()
    web.register_views(fake, rt)  # type: ignore[arg-type]
    assert (await fake.views["/healthz"](FakeWeb(), None))[0] == 200

    def broken(_: Any) -> Any:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(rt, "domain_samples", broken)
    status, body = await fake.views["/metrics"](FakeWeb(), None)
    assert status == 500
    assert "restarted" in body
    [reason] = fake.crashes
    assert str(reason) == "web view /metrics failed: OverflowError: date value out of range"


async def test_the_guard_lets_cancellation_through_and_keeps_personal_data_out_of_the_reason():
    import asyncio

    fake = FakeApp()

    @exit_on_error(fake, "task t")
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await cancelled()
    assert fake.crashes == []

    @exit_on_error(fake, "task t")
    async def leaky() -> None:
        raise ValueError("bad value '038090001234' for 'Nguyễn Văn A'")

    await leaky()
    assert "038090001234" not in str(fake.crashes[0])
    assert "Nguyễn" not in str(fake.crashes[0])


# --------------------------------------------------------------------------- bounded series


def _bound(units: int, years: int) -> dict[str, int]:
    per = units * 3 * 3  # unit (tier follows) x level x channel
    window = 17 * years
    return {DOSSIERS_RECEIVED.name: per * window, DOSSIERS_FINISHED.name: per * window * 3,
            DOSSIERS_REFUSED.name: per * window, DOSSIERS_WITHDRAWN.name: per * window,
            DOSSIERS_OPEN.name: per * window, DOSSIERS_OPEN_NOW.name: per, DOSSIERS_OVERDUE_NOW.name: per}


def _view(i: int, rng: random.Random, unit: str) -> DossierView:
    # Forged or pre-bounds state: any date at all, year 1 included.
    recv = rng.randrange(int(datetime(1, 1, 2, tzinfo=TZ).timestamp()), int(datetime(9000, 1, 1).timestamp()))
    status = 4 if i % 250 == 0 else rng.choice((3, 7, 9, 10))
    end = None if status == 4 else recv + rng.randrange(0, 86400 * 40)
    return DossierView(ma_ho_so=f"H56.X-{i}", version=1, unit_code=unit, unit_tier="XA", procedure_code=f"P{i}",
                       level_raw=rng.choice((1, 2, 3, 4)), channel=rng.choice(list(Channel)), status=status,
                       received_ts=recv, due_ts=recv + 86400 * rng.randrange(0, 30), end_ts=end,
                       as_of_ts=end or int(NOW.timestamp()), supplement_requests=0, paid_online=False,
                       digitised=False, electronic_result=False)


def test_metric_series_stay_within_the_configured_bound_whatever_the_input(rt):
    """10^4 dossiers of distinct dates (year 1 .. 9000), units (mostly unknown) and procedures."""
    rng = random.Random(11)
    known = [u.code for u in rt.units.units()][:20]
    agg = Aggregates(rt.units)
    for i in range(10_000):
        unit = rng.choice(known) if i % 3 == 0 else f"9{i:07d}"
        try:
            agg.apply_change(0, None, _view(i, rng, unit))
        except (ValueError, OverflowError):
            continue  # a view the counters cannot take is the rebuild's to skip, tested above
    years_back = rt.settings.metrics.years_back
    window = metric_window(NOW.year, years_back)
    series: dict[str, set[frozenset[tuple[str, str]]]] = {}
    for fam in to_families(agg.prometheus_samples(NOW, window)):
        for s in fam.samples:
            series.setdefault(s.name, set()).add(frozenset(s.labels.items()))
            assert s.labels.get("unit", known[0]) in known, s.labels
            assert s.labels.get("period", "2026") in window
    bound = _bound(len(known), years_back + 1)
    for name, got in series.items():
        if name in bound:
            assert len(got) <= bound[name], name
    periods = {dict(lbl).get("period") for name in series for lbl in series[name]} - {None}
    assert len(periods) <= 17 * (years_back + 1)  # without the window: thousands (the next test)


async def test_metrics_of_a_live_worker_export_only_the_window_and_known_reasons(rt):
    """The /metrics text itself: one open dossier of year 1 in the state, dead letters of any reason."""
    rt.clock = lambda: NOW
    v = _view(0, random.Random(1), "14767")
    old = DossierView(**{**{f: getattr(v, f) for f in v.__slots__}, "status": 4, "end_ts": None,
                         "received_ts": int(datetime(1, 1, 2, tzinfo=TZ).timestamp()),
                         "as_of_ts": int(datetime(1, 1, 3, tzinfo=TZ).timestamp())})
    rt.aggregates.apply_change(0, None, old)
    for i in range(500):
        await rt.dead_letter(DeadLetter(stage="state", reason=f"made-up-{i}", detail="x", source="s"))
    text = generate_latest(rt.registry).decode()
    periods = set(re.findall(r'period="([^"]+)"', text))
    assert 0 < len(periods) <= 17 * (rt.settings.metrics.years_back + 1)  # was 34,442
    assert periods <= metric_window(NOW.year, rt.settings.metrics.years_back)
    reasons = set(re.findall(r'reason="([^"]+)"', text))
    assert reasons <= set(REASONS)
    assert re.search(r'dvchub_dead_letters_total\{reason="unexpected",stage="state"\} 500\.0', text)


@pytest.mark.parametrize("field", ["source", "instance"])
async def test_a_raw_envelope_with_control_characters_is_refused_before_it_names_anything(rt, field):
    from streams.agents import normalizer

    body = orjson.loads(raw(motcua(MA, "14767", 1, 4, proc="P1", level=4, channel="2", received=T0, due=T0,
                                   end=None, updated=T0)))
    body[field] = body[field] + "\r\nX-Forged: 1"
    await normalizer.handle(rt, "normalize_motcua", "dvchub.raw.motcua", FakeEvent(orjson.dumps(body)))
    [letter] = letters(rt)
    assert letter.reason == "schema"
    assert letter.source == "motcua"  # from the topic name, not from the record
    for _, key, _, headers, _ in rt.sink:  # keys and headers are where a CR/LF would forge something
        assert b"\r" not in (key or b"")
        assert all(b"\r" not in v and b"\n" not in v for _, v in headers or [])
    assert rt.sink.on(rt.topics.canonical.get_topic_name()) == []
