"""The generic HTTP faults every app shares, and the control endpoints."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import aiohttp
import pytest

from hub.simulators.faults import Faults
from hub.simulators.motcua import make_motcua_app

KEY = {"X-Api-Key": "k"}
HEALTH = "/donvi/14767/api/v1/health"


@pytest.fixture
def faults():
    return Faults(seed=4)


@pytest.fixture
async def client(world, faults, client_for):
    return await client_for(make_motcua_app(world, faults, {"14767": "k"}))


async def test_429_with_retry_after(client, faults):
    faults.update({"p_429": 1.0, "retry_after_s": 7})
    resp = await client.get(HEALTH, headers=KEY)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "7"


async def test_5xx(client, faults):
    faults.update({"p_5xx": 1.0})
    statuses = {(await client.get(HEALTH, headers=KEY)).status for _ in range(30)}
    assert statuses <= {500, 502, 503, 504}
    assert len(statuses) > 1


async def test_reset_closes_without_answer(client, faults):
    faults.update({"p_reset": 1.0})
    with pytest.raises(aiohttp.ClientError):
        await client.get(HEALTH, headers=KEY)
    faults.update({"p_reset": 0.0})
    assert (await client.get(HEALTH, headers=KEY)).status == 200


async def test_timeout_then_answer_or_drop(client, faults):
    faults.update({"p_timeout": 1.0, "timeout_s": 0.4})
    with pytest.raises(asyncio.TimeoutError):
        await client.get(HEALTH, headers=KEY, timeout=aiohttp.ClientTimeout(total=0.1))
    started = time.monotonic()
    assert (await client.get(HEALTH, headers=KEY)).status == 200  # a patient client gets the answer
    assert time.monotonic() - started >= 0.4
    faults.update({"timeout_drop": True, "timeout_s": 0.1})
    with pytest.raises(aiohttp.ClientError):
        await client.get(HEALTH, headers=KEY)


async def test_latency(client, faults):
    faults.update({"latency_ms": (150, 150)})
    started = time.monotonic()
    await client.get(HEALTH, headers=KEY)
    assert time.monotonic() - started >= 0.15


async def test_maintenance_window_follows_the_source_clock(client, faults, clock):
    faults.update({"maintenance_s": 300})
    resp = await client.get(HEALTH, headers=KEY)
    assert resp.status == 503
    assert "Retry-After" in resp.headers
    clock.advance(timedelta(seconds=299))
    assert (await client.get(HEALTH, headers=KEY)).status == 503
    clock.advance(timedelta(seconds=1))
    assert (await client.get(HEALTH, headers=KEY)).status == 200


async def test_same_seed_same_fault_sequence(world, client_for):
    runs = []
    for _ in range(2):
        client = await client_for(make_motcua_app(world, Faults(seed=11, p_5xx=0.3, p_429=0.2), {"14767": "k"}))
        runs.append([(await client.get(HEALTH, headers=KEY)).status for _ in range(40)])
    assert runs[0] == runs[1]
    assert {200, 429} <= set(runs[0])


async def test_control_endpoint_switches_faults_at_run_time(client, faults):
    resp = await client.post("/_sim/faults", json={"p_5xx": 1.0})
    assert resp.status == 200
    assert (await resp.json())["p_5xx"] == 1.0
    assert faults.p_5xx == 1.0  # the very object the app uses
    assert (await client.get(HEALTH, headers=KEY)).status >= 500
    await client.post("/_sim/faults", json={"preset": "off"})
    assert (await client.get(HEALTH, headers=KEY)).status == 200
    resp = await client.post("/_sim/faults", json={"spec": "all_on,seed=2"})
    assert (await resp.json())["nfd"] is True
    assert faults.seed == 2
    bad = await client.post("/_sim/faults", json={"p_5xx": 3})
    assert bad.status == 400
    assert "known" in await bad.json()
    assert (await (await client.get("/_sim/faults")).json())["p_5xx"] == faults.p_5xx


async def test_stats_count_requests_and_injections(client, faults):
    await client.get(HEALTH, headers=KEY)
    faults.update({"p_429": 1.0})
    await client.get(HEALTH, headers=KEY)
    stats = await (await client.get("/_sim/stats")).json()
    assert stats["app"] == "motcua"
    assert stats["requests"] == 2
    assert stats["by_status"] == {"200": 1, "429": 1}
    assert stats["by_route"] == {"/donvi/{ma_don_vi}/api/v1/health": 2}
    assert stats["injected"] == {"429": 1}
    await client.post("/_sim/stats/reset")
    assert (await (await client.get("/_sim/stats")).json())["requests"] == 0


async def test_request_log_has_no_secrets(client, world):
    await client.get(HEALTH, headers={"X-Api-Key": "k", "Authorization": "Basic eDp5"})
    entry = world.requests(app="motcua")[-1]
    assert entry["path"] == HEALTH
    assert entry["status"] == 200
    assert {k.lower() for k in entry["headers"]}.isdisjoint({"x-api-key", "authorization"})
    assert entry["answer"]["thoi_gian_may_chu"] == "20210115093000"
