"""Sources whose changes appear late, and whose clock is not the hub's.

Fails if a connector's cursor runs past a change that commits later than its stamp (late
visibility), or if it trusts the hub's clock instead of the source's (skew): the missed versions
leave the figures short of the ground truth (three ways) and the final versions absent from the
raw topic.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.simulators.clock import SimClock
from hub.simulators.faults import Faults
from schemas.raw import RawRecord
from tests.reliability.conftest import SOAK_SCALE, HubFactory
from tests.reliability.harness import HubUnderTest

# Covered in CI by tests/sync and tests/connectors; the full-pipeline versions run with `make reliability`.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]


def assert_every_final_version_collected(hub: HubUnderTest) -> None:
    raw = (RawRecord.model_validate_json(r.value) for r in hub.read_topic(hub.settings.topics.raw_motcua))
    seen = {(r.key, int(r.version)) for r in raw if r.kind == "dossier"}
    final = {(ma, int(s["PhienBan"])) for ma, s in hub.world.final_dossiers().items()}
    missing = final - seen
    assert not missing, f"{len(missing)} final versions never collected: {sorted(missing)[:10]}"


@pytest.mark.parametrize("share", [pytest.param(0.2, id="fast"), pytest.param(0.5, id="soak", marks=pytest.mark.soak)])
def test_late_visibility_nothing_missed(hub_factory: HubFactory, share: float) -> None:
    """A share of one-stop changes commits 1–120 s (source time) after its ``NgayCapNhat``; nothing is missed."""
    hub = hub_factory(player_faults=Faults(seed=7, late_visibility=share, late_max_s=120),
                      **({"scale": SOAK_SCALE} if share > 0.2 else {})).start()
    hub.wait_caught_up()
    hub.check_figures()
    assert_every_final_version_collected(hub)


@pytest.mark.parametrize("skew_min", [
    pytest.param(-5, id="behind-fast"),
    pytest.param(5, id="ahead-soak", marks=pytest.mark.soak),
    pytest.param(-30, id="behind-soak", marks=pytest.mark.soak),
])
def test_source_clock_skew_nothing_missed(hub_factory: HubFactory, skew_min: int) -> None:
    """The sources' clock runs ``skew_min`` minutes off the hub's (live), with late commits of up to 15 s.

    Every version is stamped by the skewed source clock (ties on the same second included).
    """
    hub = hub_factory(clock=SimClock.live(skew=timedelta(minutes=skew_min)),
                      player_faults=Faults(seed=3, late_visibility=0.2, late_max_s=15)).start()
    hub.wait_caught_up()
    hub.check_figures()
    assert_every_final_version_collected(hub)
