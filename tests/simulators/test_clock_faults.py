"""SimClock modes and the Faults switches: parsing, presets, seeded draws."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.simulators.clock import TZ, SimClock, fmt_compact, fmt_iso, parse_compact, parse_iso
from hub.simulators.faults import Faults


def test_manual_clock_set_and_advance():
    clock = SimClock.manual(datetime(2021, 1, 15, 9, 30))  # naive = local time
    assert clock.now() == datetime(2021, 1, 15, 9, 30, tzinfo=TZ)
    clock.advance(timedelta(seconds=61))
    assert fmt_compact(clock.now()) == "20210115093101"
    clock.set(datetime(2021, 1, 15, 2, 0, tzinfo=UTC))  # converted to local time
    assert fmt_compact(clock.now()) == "20210115090000"
    assert clock.now().tzinfo is TZ


def test_live_clock_follows_real_time_with_skew():
    ahead = SimClock.live(skew=timedelta(minutes=5))
    drift = ahead.now() - datetime.now(TZ)
    assert timedelta(minutes=4, seconds=59) < drift < timedelta(minutes=5, seconds=1)
    with pytest.raises(RuntimeError):
        ahead.advance(timedelta(seconds=1))


def test_time_formats():
    dt = parse_compact("20210115093012")
    assert fmt_iso(dt) == "2021-01-15T09:30:12+07:00"
    assert parse_iso("2021-01-15T02:30:12+00:00") == dt
    with pytest.raises(ValueError):
        parse_compact("2021-01-15")
    with pytest.raises(ValueError):
        parse_iso("2021-01-15T09:30:12")  # no offset


def test_faults_off_by_default_and_never_fire():
    faults = Faults()
    assert not any(faults.roll(faults.p_5xx) for _ in range(1000))
    assert faults.visible_delay() == timedelta(0)
    assert faults.latency_s() == 0.0


def test_from_spec_parses_every_kind_of_value():
    faults = Faults.from_spec("seed=5, p_5xx=0.25, latency_ms=10-50, nfd, revoke_every=7, maintenance_mode=timeout")
    assert (faults.seed, faults.p_5xx, faults.latency_ms, faults.nfd) == (5, 0.25, (10, 50), True)
    assert faults.revoke_every == 7
    assert faults.maintenance_mode == "timeout"
    preset = Faults.from_spec("all_on,p_429=0")
    assert preset.p_5xx > 0
    assert preset.p_429 == 0


@pytest.mark.parametrize("spec", ["p_5xx=2", "no_such_switch=1", "nfd=maybe", "latency_ms=50-10"])
def test_from_spec_rejects_bad_specs(spec):
    with pytest.raises(ValueError):
        Faults.from_spec(spec)


def test_update_is_atomic_on_error():
    faults = Faults(p_5xx=0.1)
    with pytest.raises(ValueError):
        faults.update({"p_5xx": 0.5, "p_429": 7})
    assert faults.p_5xx == 0.1


def test_all_on_is_moderate():
    faults = Faults.all_on(seed=1)
    rates = [getattr(faults, n) for n in Faults.field_names() if n.startswith("p_")]
    assert all(0 < r <= 0.1 for r in rates)
    assert faults.maintenance_s == 0


def test_same_seed_same_faults():
    a, b = Faults(seed=9, p_5xx=0.3), Faults(seed=9, p_5xx=0.3)
    assert [a.roll(a.p_5xx) for _ in range(200)] == [b.roll(b.p_5xx) for _ in range(200)]


def test_visible_delay_fraction_and_bound():
    faults = Faults(seed=3, late_visibility=0.5, late_max_s=120)
    delays = [faults.visible_delay() for _ in range(2000)]
    late = [d for d in delays if d > timedelta(0)]
    assert 800 < len(late) < 1200
    assert max(late) <= timedelta(seconds=120)
    assert min(late) >= timedelta(seconds=1)


def test_maintenance_window_on_source_clock():
    faults = Faults(maintenance_s=60)
    start = datetime(2021, 1, 15, 9, 0, tzinfo=TZ)
    assert faults.in_maintenance(start)  # opens at the first check
    assert faults.in_maintenance(start + timedelta(seconds=59))
    assert not faults.in_maintenance(start + timedelta(seconds=60))
