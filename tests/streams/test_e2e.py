"""End-to-end: real broker, real worker processes, figures checked against a recount of the input.

Every figure is checked three ways (reliability.md): the worker's /metrics = the partials-based
report = a recount computed from the generated input with the domain core's pure functions.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from hub.commands.report import live_catalogue, live_counts, make_report
from hub.config import Settings
from schemas.calendar import TZ
from schemas.figures import merge_counts
from schemas.units import UnitRegistry
from streams.domain.report import build_report, render

from .gen import Recount, recount, scenario
from .harness import (
    MERGED_NAMES,
    Worker,
    caught_up,
    dead_letters,
    diff,
    domain_samples_expected,
    domain_samples_from_text,
    produce,
    wait_until,
    without_zeros,
    write_settings,
)

pytestmark = pytest.mark.e2e

PARTITIONS = 4


def expected_partials(rc: Recount, now: datetime) -> dict[str, Counter[str]]:
    parts = [rc.aggregates.unit_figures(0, u, now) for u in rc.aggregates.units(0)]
    return {u: +c for u, c in merge_counts(parts).items() if +c}


def live_partials(settings: Settings) -> dict[str, Counter[str]]:
    return {u: +c for u, c in live_counts(settings).items() if +c}


def check_figures(settings, workers, rc, sc, *, exact_dead_letters: bool) -> None:
    """/metrics summed over workers, the partials topic and the report all equal the recount."""
    now = datetime.now(TZ)
    want = without_zeros(domain_samples_expected(rc, now))
    got_text = [w.metrics_text() for w in workers]
    got: dict[Any, float] = {}
    for t in got_text:
        for k, v in domain_samples_from_text(t).items():
            got[k] = got.get(k, 0.0) + v
    assert without_zeros(got) == want, diff(without_zeros(got), want)

    want_counts = expected_partials(rc, now)
    try:
        wait_until(lambda: live_partials(settings) == want_counts, 20, "partials equal to the recount")
    except AssertionError:
        got_counts = live_partials(settings)
        empty: Counter[str] = Counter()
        rows = [
            f"{u} {k}: got {got_counts.get(u, empty)[k]} want {want_counts.get(u, empty)[k]}"
            for u in sorted(set(got_counts) | set(want_counts))
            for k in sorted(set(got_counts.get(u, empty)) | set(want_counts.get(u, empty)))
            if got_counts.get(u, empty)[k] != want_counts.get(u, empty)[k]
        ]
        raise AssertionError(
            f"partials differ from the recount in {len(rows)} keys:\n" + "\n".join(rows[:20])
        ) from None

    live = json.loads(render(make_report(settings, "2021-Q1", None), "json"))
    merged = merge_counts([rc.aggregates.unit_figures(0, u, now) for u in rc.aggregates.units(0)])
    ref = json.loads(render(
        build_report(merged, rc.catalogue, _registry(), "2021-Q1", None, settings.targets, settings.kpi), "json"
    ))
    assert _strip_times(live) == _strip_times(ref)

    dls = dead_letters(settings)
    by_origin = {(d.topic, d.partition, d.offset): d.reason for d in dls}
    assert all(d.stage == "normalize" for d in dls)
    assert Counter(by_origin.values()) == Counter(sc.poison.values())
    if exact_dead_letters:
        assert len(dls) == len(sc.poison)


def _registry() -> UnitRegistry:
    from schemas.units import default_registry

    return default_registry()


def _strip_times(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_times(v) for k, v in obj.items() if k not in ("generated_at", "thoi_diem_tong_hop")}
    if isinstance(obj, list):
        return [_strip_times(v) for v in obj]
    return obj


@pytest.fixture
def hub(tmp_path, kafka_broker):
    config, settings = write_settings(tmp_path, kafka_broker.bootstrap, PARTITIONS)
    workers: list[Worker] = []

    def spawn(name: str = "w") -> Worker:
        w = Worker(config, tmp_path, name).start()
        workers.append(w)
        return w

    yield settings, spawn
    for w in workers:
        w.stop()


def test_worker_counts_equal_the_recount(hub):
    settings, spawn = hub
    sc = scenario(n_dossiers=120, seed=1)
    rc = recount(sc)
    assert rc.rejected == Counter(sc.poison.values())
    produce(settings, sc.records)
    w = spawn()
    wait_until(lambda: caught_up([w], PARTITIONS), 90, "the worker to catch up", [w])
    status = w.status()
    assert status is not None
    assert status["records_in"]["normalize_motcua"] == sum(1 for s, _, _ in sc.records if s == "motcua")
    text = w.metrics_text()
    assert f"dvchub_state_dossiers {float(rc.dossiers)}" in text
    for reason, n in Counter(sc.poison.values()).items():
        assert f'dvchub_dead_letters_total{{reason="{reason}",stage="normalize"}} {float(n)}' in text
    check_figures(settings, [w], rc, sc, exact_dead_letters=True)


def test_sigkill_several_times_mid_run_counts_stay_exact(hub):
    """The acceptance test: SIGKILL the worker ≥3 times mid-run; afterwards every counter = the recount."""
    settings, spawn = hub
    sc = scenario(n_dossiers=600, seed=2)
    rc = recount(sc)
    rng = random.Random(5)
    started = time.monotonic()
    w = spawn()
    # Five waves of input; after each of the first four, SIGKILL the worker while it processes it.
    waves = [sc.records[i::5] for i in range(5)]
    kills = 0
    interrupted = []
    for wave in waves[:-1]:
        wait_until(lambda: (s := w.status()) is not None and s["ready"], 60, "worker ready", [w])
        before = w.status()["records_processed"]
        produce(settings, wave)
        # Kill as soon as the worker is inside the wave (plus a random delay): mid-batch, between
        # changelog writes and offset commits.
        def inside_wave(b: int = before) -> bool:
            st = w.status()
            return st is not None and st["records_processed"] > b

        wait_until(inside_wave, 30, "processing to start", [w])
        time.sleep(rng.uniform(0.0, 0.3))
        at = w.status()["records_processed"] - before
        w.kill9()
        interrupted.append((at, len(wave)))
        kills += 1
        w.start()
    produce(settings, waves[-1])
    wait_until(lambda: caught_up([w], PARTITIONS), 120, "the worker to catch up after the kills", [w])
    check_figures(settings, [w], rc, sc, exact_dead_letters=False)
    print(f"crash test: {kills} SIGKILLs at (records processed, wave size) {interrupted}, "
          f"{len(sc.records)} records, {time.monotonic() - started:.1f}s")


def test_two_workers_share_the_partitions(hub):
    settings, spawn = hub
    sc = scenario(n_dossiers=200, seed=3)
    rc = recount(sc)
    produce(settings, sc.records)
    a, b = spawn("a"), spawn("b")
    wait_until(lambda: caught_up([a, b], PARTITIONS), 240, "two workers to share and catch up", [a, b])
    sa, sb = a.status(), b.status()
    assert sa
    assert sb
    assert sa["partitions"], sa  # both workers got a share
    assert sb["partitions"], sb
    # Dead letters are at-least-once like everything else: when one worker joins a generation
    # after the other has started processing, the rebalance re-delivers its uncommitted records,
    # poison included, and the new owner dead-letters them again (same origin, same event id).
    check_figures(settings, [a, b], rc, sc, exact_dead_letters=False)


def test_merged_gauges_equal_the_report_from_the_partials(hub):
    """766 and catalogue gauges: one identical city-wide copy per worker, equal to build_report's figures."""
    settings, spawn = hub
    sc = scenario(n_dossiers=120, seed=4)
    produce(settings, sc.records)
    a, b = spawn("a"), spawn("b")
    wait_until(lambda: caught_up([a, b], PARTITIONS), 240, "two workers to share and catch up", [a, b])
    rc = recount(sc)
    want_counts = expected_partials(rc, datetime.now(TZ))
    wait_until(lambda: live_partials(settings) == want_counts, 30, "partials equal to the recount")
    period = "2021-Q1"
    report = build_report(live_counts(settings), live_catalogue(settings), _registry(), period, None,
                          settings.targets, settings.kpi)
    want: dict[Any, float] = {}
    for row in report.rows:
        base = {"unit": row.code, "tier": row.tier}
        for level, n in row.offered.items():
            if level == "KHONG_TRUC_TUYEN":  # the gauge counts online procedures only (merged_samples)
                continue
            want[("dvchub_procedures_offered", frozenset({**base, "level": level}.items()))] = float(n)
        per = {**base, "period": period, "period_kind": "quarter"}
        for level, n in row.without_dossier.items():
            want[("dvchub_procedures_without_dossier", frozenset({**per, "level": level}.items()))] = float(n)
        for code, ind in row.indicators.items():
            if ind.rate is not None:
                want[("dvchub_kpi766_rate_ratio", frozenset({**per, "indicator": code}.items()))] = ind.rate
            if ind.score is not None:
                want[("dvchub_kpi766_score", frozenset({**per, "indicator": code}.items()))] = ind.score
    assert any(k[0] == "dvchub_kpi766_score" and v > 0 for k, v in want.items())

    def quarter_gauges(w: Worker) -> dict[Any, float]:
        got = domain_samples_from_text(w.metrics_text(), MERGED_NAMES)
        return {k: v for k, v in got.items()
                if k[0] == "dvchub_procedures_offered" or ("period", period) in k[1]}

    # The readers follow the partials topic: wait until both workers expose what the report says.
    try:
        wait_until(lambda: quarter_gauges(a) == want and quarter_gauges(b) == want, 30,
                   "merged gauges equal to the report on both workers", [a, b])
    except AssertionError:
        raise AssertionError("merged gauges differ from the report: " + diff(quarter_gauges(a), want)) from None


def test_hostile_records_are_dead_letters_and_the_worker_stays_ready_with_figures(hub):
    """Implausible dates, codes and versions at the edge, a forged canonical event and a table row no
    current hub writes (on the changelog the worker recovers from): every one a dead letter, the
    worker ready, the figures of everything else exact, /metrics within its period window.

    Before the bounds and the guarded rebuild, the changelog row alone kept the worker at 503 forever.
    """
    from kafka.admin import NewTopic

    from hub.kafka import ensure_topics, producer
    from schemas.events import DossierEvent
    from schemas.raw import RawRecord
    from streams.domain.periods import metric_window
    from streams.domain.state import apply
    from streams.topics import DOSSIER_TABLE, changelog_topic, encode_canonical

    from .gen import T0, motcua, raw
    from .test_agents import canonical_of

    settings, spawn = hub
    sc = scenario(n_dossiers=40, seed=3)
    ok = motcua("H56.14767-HOSTILE", "14767", 1, 4, proc="P1", level=4, channel="2", received=T0, due=T0,
                end=None, updated=T0)
    hostile: list[tuple[dict[str, Any], str]] = [
        ({"NgayHenTra": "99991231235959"}, "out_of_range"),
        ({"NgayTiepNhan": "00010102000000", "QuaTrinhXuLy": []}, "out_of_range"),
        ({"PhienBan": 10**12}, "out_of_range"),
        ({"MaHoSo": "H56.14767-\r\nFAKE"}, "schema"),
    ]
    for i, (change, reason) in enumerate(hostile):
        rec = RawRecord.build(source="motcua", instance="motcua-14767", kind="dossier", key=f"hostile-{i}",
                              version="1", payload={**ok.payload, **change})
        sc.add("motcua", f"hostile-{i}", raw(rec))
        sc.poison[raw(rec)] = reason
    rc = recount(sc)

    # A row of an older hub: finished in year 10001, which the counters cannot place in any period.
    good = DossierEvent.model_validate_json(canonical_of(raw(ok)))
    state = apply(None, good)
    assert state is not None
    s = list(state["s"])
    s[6], s[9] = 10, 253402300800 + 86400 * 400
    changelog = changelog_topic(settings, DOSSIER_TABLE)
    ensure_topics(settings.kafka, [NewTopic(changelog, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})])
    forged = encode_canonical(good.model_copy(update={"ma_ho_so": "H56.14767-FORGED", "due_at": datetime(
        9999, 12, 31, tzinfo=TZ)}))
    prod = producer(settings.kafka, "tests")
    try:
        prod.send(changelog, key=b"H56.14767-OLD", partition=0,
                  value=json.dumps({"p": 0, "o": 7, "s": {**state, "k": "H56.14767-OLD", "s": s}}).encode())
        canonical_at = prod.send(settings.topics.canonical, key=b"H56.14767-FORGED", value=forged).get(30)
        prod.flush()
    finally:
        prod.close()
    produce(settings, sc.records)

    w = spawn()
    wait_until(lambda: caught_up([w], PARTITIONS), 120, "the worker to catch up", [w])
    status = w.status()
    assert status is not None
    assert status["ready"]
    assert status["skipped_rows"] == 1
    assert w.get("/healthz").status_code == 200

    now = datetime.now(TZ)
    got: dict[Any, float] = domain_samples_from_text(w.metrics_text())
    want = without_zeros(domain_samples_expected(rc, now))
    assert without_zeros(got) == want, diff(without_zeros(got), want)
    wait_until(lambda: live_partials(settings) == expected_partials(rc, now), 30, "partials equal to the recount")
    window = metric_window(now.year, settings.metrics.years_back)
    assert {dict(k[1]).get("period") for k in got} - {None} <= window

    dls = dead_letters(settings)
    normalize = Counter(d.reason for d in dls if d.stage == "normalize")
    assert normalize == Counter(sc.poison.values())
    # By origin: at-least-once may replay a record (and its dead letter) after a reread.
    state_letters = {(d.partition, d.offset): d.reason for d in dls if d.stage == "state"}
    assert state_letters == {(canonical_at.partition, canonical_at.offset): "out_of_range", (0, 7): "unexpected"}
    assert not any("FAKE" in (d.event_id or "") or "\r" in d.detail for d in dls)
