"""The provincial portal misbehaves while the hub pushes the scenario back to it.

Each test turns one portal fault on while the scenario plays (the portal *targets* answer the
portal sync; the portal *source* feeds a connector — both see the fault), then demands that the
portal ends up holding exactly the ground truth's dossiers, that the fault was handled the way
portal-sync.md promises (from the simulator's request log, with wall-clock times), and that the
counters are still exact three ways.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.conftest import SOAK_SCALE, HubFactory
from tests.reliability.harness import HubUnderTest, wait_until

# Covered in CI by tests/sync and tests/connectors; the full-pipeline versions run with `make reliability`.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

#: The portal sync's requests (the connector reads other paths of the same app).
SYNC_PATHS = ("/api/v1/dongbo", "/api/v1/thongke")


def sync_requests(hub: HubUnderTest) -> list[dict[str, Any]]:
    return [r for r in hub.world.requests(app="portal") if str(r["path"]).startswith(SYNC_PATHS)]


def wait_portal_holds_truth(hub: HubUnderTest, timeout: float = 180) -> None:
    """Every dossier of the ground truth at the portal, at its final status; nothing else."""
    def missing() -> list[str]:
        out = []
        for ma, snap in hub.truth.final_snapshots.items():
            held = hub.world.portal_dossier(ma)
            if held is None or str(held["snapshot"].get("TrangThaiHoSo")) != str(snap["TrangThaiHoSo"]):
                out.append(ma)
        return out

    wait_until(lambda: not missing(), timeout, "the portal to hold every final dossier",
               lambda: f"missing or stale: {missing()[:10]}\n{hub.logs()}")
    extra = set(hub.world.portal_dossiers) - set(hub.truth.final_snapshots)
    assert not extra, f"the portal holds dossiers the sources never had: {sorted(extra)[:10]}"


def run_with_fault(hub_factory: HubFactory, fault: dict[str, Any], seconds: float, soak: bool,
                   during: Callable[[HubUnderTest], None] | None = None) -> tuple[HubUnderTest, float, float]:
    """Play the scenario with ``fault`` on the portal for ``seconds`` from the first push; then off.

    Returns the hub and the wall-clock window (monotonic) of the fault.
    """
    hub = hub_factory(**({"scale": SOAK_SCALE} if soak else {})).start()
    wait_until(lambda: sync_requests(hub), 180, "the portal sync's first push", hub.logs)
    t0 = time.monotonic()
    hub.portal_faults.update(fault)
    if during is not None:
        during(hub)
    time.sleep(seconds)
    hub.portal_faults.apply_spec("off")
    t1 = time.monotonic()
    hub.wait_caught_up()
    wait_portal_holds_truth(hub)
    hub.check_figures()
    return hub, t0, t1


@pytest.mark.parametrize("seconds", [pytest.param(10.0, id="fast"),
                                     pytest.param(180.0, id="soak", marks=pytest.mark.soak)])
def test_portal_outage_backoff_then_everything_delivered(hub_factory: HubFactory, seconds: float) -> None:
    """Every portal request answers 500 for ``seconds``; afterwards everything is delivered, without a hot loop.

    Fails if a push is dropped (the portal misses a final dossier), or if the sync hammers the
    failing portal (more than one request per second of outage on average, plus a few probes).
    """
    hub, t0, t1 = run_with_fault(hub_factory, {"p_5xx": 1.0}, seconds, seconds > 60)
    during = [r for r in sync_requests(hub) if t0 <= r["wall"] <= t1]
    assert any(r["status"] >= 500 for r in during), "the outage did not hit the portal sync at all"
    assert len(during) <= seconds + 5, f"hot loop: {len(during)} pushes during a {seconds:.0f}s outage"


@pytest.mark.parametrize("seconds", [pytest.param(10.0, id="fast"),
                                     pytest.param(120.0, id="soak", marks=pytest.mark.soak)])
def test_portal_rate_limit_retry_after_is_honoured(hub_factory: HubFactory, seconds: float) -> None:
    """Half the portal's answers are 429 with ``Retry-After: 2``; no request comes before the wait; nothing dropped.

    Fails if the sync sends its next request earlier than the Retry-After it was given, or drops a
    dossier it was told to retry.
    """
    hub, _, _ = run_with_fault(hub_factory, {"p_429": 0.5, "retry_after_s": 2}, seconds, seconds > 60)
    reqs = sorted(sync_requests(hub), key=lambda r: r["wall"])
    # Only the injected 429s carry Retry-After: 2 (the portal's own sliding-window limiter asks for less).
    limited = [i for i, r in enumerate(reqs) if r["status"] == 429 and r.get("fault") == "429"]
    assert limited, "no injected 429 reached the portal sync"
    early = [(reqs[i]["wall"], reqs[i + 1]["wall"]) for i in limited
             if i + 1 < len(reqs) and reqs[i + 1]["wall"] - reqs[i]["wall"] < 2.0 - 0.05]
    assert not early, f"{len(early)} requests came before Retry-After elapsed: gaps {[b - a for a, b in early][:5]}"


@pytest.mark.parametrize("seconds", [pytest.param(15.0, id="fast"),
                                     pytest.param(120.0, id="soak", marks=pytest.mark.soak)])
def test_portal_lost_answer_exactly_one_effective_copy(hub_factory: HubFactory, seconds: float) -> None:
    """The portal stores a push, then resets the connection (30 %); exactly one effective copy results.

    Fails if a re-sent batch is applied again as a change (a dossier changed more often than it had
    versions), or if a progress row is recorded twice.
    """
    hub, _, _ = run_with_fault(hub_factory, {"p_reset_after_store": 0.3}, seconds, seconds > 60)
    assert any(r.get("fault") == "reset_after_store" for r in sync_requests(hub)) or \
        hub.world.requests(app="portal"), "no push was answered with a reset"
    versions = {ma: int(s["PhienBan"]) for ma, s in hub.truth.final_snapshots.items()}
    over = {ma: e["changes"] for ma, e in hub.world.portal_dossiers.items() if e["changes"] > versions.get(ma, 0)}
    assert not over, f"dossiers changed more often than they have versions: {dict(list(over.items())[:10])}"
    rows = hub.world.portal_progress
    assert len(rows) == len(hub.world.portal_progress_rows(dedup=True)), "a progress row was recorded twice"


@pytest.mark.parametrize("revokes", [pytest.param(1, id="fast"), pytest.param(5, id="soak", marks=pytest.mark.soak)])
def test_portal_token_revoked_one_refresh_no_401_storm(hub_factory: HubFactory, revokes: int) -> None:
    """Every portal token is revoked mid-run (``revokes`` times); each time one refresh, then success.

    Fails if the sync keeps presenting the dead token (a 401 storm) or fetches tokens in a loop.
    """
    def revoke(hub: HubUnderTest) -> None:
        for _ in range(revokes):
            hub.sims.revoke_portal_tokens()
            time.sleep(3.0)

    hub, t0, _ = run_with_fault(hub_factory, {}, 1.0, revokes > 1, during=revoke)
    after = [r for r in sync_requests(hub) if r["wall"] >= t0]
    unauthorized = [r for r in after if r["status"] == 401]
    tokens = [r for r in hub.world.requests(app="portal", path_prefix="/oauth2/token") if r["wall"] >= t0]
    # Two clients share the portal (the sync and the portal connector): each may refresh once per revocation.
    assert len(unauthorized) <= revokes, f"401 storm: {len(unauthorized)} refused pushes for {revokes} revocations"
    assert len(tokens) <= 2 * revokes + 2, f"token loop: {len(tokens)} token requests for {revokes} revocations"
    assert any(r["status"] == 200 for r in after), "no successful push after the revocation"
