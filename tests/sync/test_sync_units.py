"""Unit tests of the portal sync (no network, no broker): httpx.MockTransport and fake clocks."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.sdk.auth import OAuth2ClientCredentialsAuthenticator
from hub.config import OAuth2ClientCredentials, PortalSettings, RetrySettings, Settings, load_settings
from hub.sync.client import PortalClient, parse_retry_after
from hub.sync.delivery import Backoff, CircuitBreaker, Deliverer, FakeClock
from hub.sync.errors import Rejected, Transient
from hub.sync.outbox import (
    DossierState,
    StatsState,
    idempotency_key,
    new_progress_rows,
    newest_per_dossier,
    portal_dossier,
)
from hub.sync.service import SyncService, _Batch
from hub.sync.stats import DomainStatsBuilder, StatsLane, periods_around
from schemas.figures import OutboxDossier, UnitFigures, count_key
from schemas.units import default_registry

OK = {"code": 200, "status": "OK", "response": {"error_code": "0", "message": ""}, "error_code": "0", "message": ""}


def reply(code: str, message: str = "", status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"code": status, "response": {"error_code": code, "message": message}, "error_code": code,
            "message": message}
    return httpx.Response(status, json=body, headers=headers)


def item(ma: str, version: int, rows: int = 1) -> OutboxDossier:
    progress = [{"TrangThai": "2", "ThoiDiemXuLy": f"2021031{i}090000"} for i in range(rows)]
    return OutboxDossier(item_id=f"dossier:{ma}:{version}", ma_ho_so=ma, version=version,
                         created_at=datetime.now(UTC), dossier={"MaHoSo": ma, "PhienBan": version}, progress=progress)


class Portal:
    """A scripted portal: a token endpoint and a handler for everything else."""

    def __init__(self, handler: Any, ttl: int = 3600) -> None:
        self.handler = handler
        self.ttl = ttl
        self.tokens = 0
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            self.tokens += 1
            return httpx.Response(200, json={"access_token": f"t{self.tokens}", "expires_in": self.ttl})
        self.calls.append(request)
        response: httpx.Response = self.handler(request)
        return response

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self), base_url="http://portal")


# ------------------------------------------------------------------ backoff, Retry-After, breaker


def test_backoff_is_capped_full_jitter_and_retry_after_wins():
    backoff = Backoff(0.5, 8.0, random.Random(1))
    delays = [backoff.delay(a) for a in range(20) for _ in range(20)]
    assert all(0 <= d <= 8.0 for d in delays)
    assert max(backoff.delay(0) for _ in range(200)) <= 0.5
    assert backoff.delay(0, retry_after=5.0) >= 5.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None


async def test_deliverer_honours_retry_after_and_never_gives_up_on_transient_errors():
    clock = FakeClock()
    breaker = CircuitBreaker(100, 10, clock=clock.now, sleep=clock.sleep)
    deliverer = Deliverer(Backoff(0.01, 0.02, random.Random(0)), breaker, sleep=clock.sleep)
    answers = iter([Transient("429", "slow down", retry_after=3.0)] * 2 + [Transient("5xx", "x")] * 30 + ["ok"])

    async def attempt(lost: bool) -> str:
        value = next(answers)
        if isinstance(value, Exception):
            raise value
        return value

    assert await deliverer.run("dossier", attempt) == "ok"
    assert clock.sleeps[0] >= 3.0
    assert clock.sleeps[1] >= 3.0


async def test_breaker_opens_pauses_probes_once_and_closes():
    clock = FakeClock()
    breaker = CircuitBreaker(3, 30, clock=clock.now, sleep=clock.sleep)
    deliverer = Deliverer(Backoff(0.01, 0.01), breaker, sleep=clock.sleep)
    calls: list[float] = []

    async def attempt(lost: bool) -> str:
        calls.append(clock.t)
        if clock.t < 100:  # the portal is down for 100 s
            raise Transient("5xx", "down")
        return "ok"

    assert await deliverer.run("stats", attempt) == "ok"
    assert "open" in breaker.transitions
    assert breaker.state == "closed"
    # 3 failures open it; then one probe per 30 s until t >= 100: a handful of calls, not a hot loop.
    assert len(calls) <= 3 + 100 / 30 + 2
    assert breaker.transitions[-1] == "closed"


async def test_repeated_system_error_bodies_become_a_rejection():
    clock = FakeClock()
    deliverer = Deliverer(Backoff(0.01, 0.01), CircuitBreaker(100, 1, clock=clock.now, sleep=clock.sleep),
                          max_attempts=3, sleep=clock.sleep)

    async def attempt(lost: bool) -> str:
        raise Transient("error_body", "Lỗi hệ thống")

    with pytest.raises(Rejected):
        await deliverer.run("dossier", attempt)


# ------------------------------------------------------------------ outbox rules


def test_idempotency_keys_are_deterministic():
    body = {"isUpdating": "False", "data": [{"MaHoSo": "A"}, {"MaHoSo": "B"}]}
    key = idempotency_key("dossier", ["dossier:A:1", "dossier:B:2"], body)
    assert key == idempotency_key("dossier", ["dossier:B:2", "dossier:A:1"], json.loads(json.dumps(body)))
    assert key != idempotency_key("dossier", ["dossier:A:1", "dossier:B:2"], {**body, "isUpdating": "True"})
    assert key != idempotency_key("dossier", ["dossier:A:1", "dossier:B:3"], body)


def test_newest_version_wins_and_progress_high_water_mark():
    items = [item("A", 2), item("A", 3), item("A", 1), item("B", 1), item("A", 3)]
    newest = newest_per_dossier(items)
    assert {k: v.version for k, v in newest.items()} == {"A": 3, "B": 1}
    state = DossierState(ma_ho_so="A", version=2, on_portal=True)
    rows = item("A", 3, rows=3).progress
    state.advance(rows[:2])
    assert new_progress_rows(rows, state) == rows[2:]
    assert state.supersedes(item("A", 2))
    assert not state.supersedes(item("A", 3))


def test_no_personal_data_leaves_and_id_hash_only_when_required():
    dossier = {"MaHoSo": "A", "ChuHoSo": "Nguyễn Văn A", "SoDienThoai": "0912345678", "SoGiayToChuHoSo": "0380",
               "IdHash": "h1:x", "QuaTrinhXuLy": [{"TrangThai": "2", "HoTen": "x"}]}
    out = portal_dossier(dossier, send_id_number=False)
    assert out == {"MaHoSo": "A", "QuaTrinhXuLy": [{"TrangThai": "2"}]}
    assert portal_dossier(dossier, send_id_number=True)["IdHash"] == "h1:x"


# ------------------------------------------------------------------ the service's push logic (mock portal)


def service_with(handler: Any) -> tuple[SyncService, Portal, list[str]]:
    settings = Settings(portal=PortalSettings(retry=RetrySettings(base_delay_s=0.001, max_delay_s=0.002)))
    service = SyncService(settings)
    portal = Portal(handler)
    http = portal.client()
    oauth = OAuth2ClientCredentialsAuthenticator(
        OAuth2ClientCredentials(client_id="id", client_secret=SecretStr("s")), "http://portal")
    service._client = PortalClient(http, oauth.httpx_auth(http))
    dead: list[str] = []

    async def dead_letter(reason: str, detail: str, **kw: Any) -> None:
        dead.append(kw["event_id"])

    async def save_state(key: bytes, value: bytes) -> None:
        return None

    service._dead_letter = dead_letter  # type: ignore[method-assign]
    service._save_state = save_state  # type: ignore[method-assign]
    return service, portal, dead


async def test_error_code_3_resends_the_batch_as_updating():
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return reply("3", "Hồ sơ đã tồn tại") if body["isUpdating"] == "False" else reply("0")

    service, portal, _ = service_with(handler)
    accepted = await service._push_dossier_chunk([item("A", 1), item("B", 1)], False, _Batch())
    assert [i.ma_ho_so for i in accepted] == ["A", "B"]
    assert [json.loads(r.content)["isUpdating"] for r in portal.calls] == ["False", "True"]
    assert service.dossiers["A"].on_portal
    assert service.dossiers["A"].version == 1


async def test_a_lost_answer_is_settled_by_look_up_not_by_sending_again():
    stored: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            for d in json.loads(request.content)["data"]:
                stored[d["MaHoSo"]] = d
            raise httpx.ReadError("connection reset after store")
        ma = request.url.path.rsplit("/", 1)[1]
        if ma not in stored:
            return httpx.Response(404, json={"error_code": "404"})
        return httpx.Response(200, json={"error_code": "0", "response": {"error_code": "0", "data": stored[ma]}})

    service, portal, _ = service_with(handler)
    accepted = await service._push_dossier_chunk([item("A", 1), item("B", 1), item("C", 1)], False, _Batch())
    assert len(accepted) == 3
    methods = [(r.method, r.url.path) for r in portal.calls]
    assert methods.count(("POST", "/api/v1/dongbo/hoso")) == 1
    assert ("GET", "/api/v1/dongbo/hoso/A") in methods


async def test_a_refused_batch_is_halved_until_only_the_bad_dossier_is_dead_lettered():
    def handler(request: httpx.Request) -> httpx.Response:
        data = json.loads(request.content)["data"]
        return reply("1", "Dữ liệu không hợp lệ") if any(d["MaHoSo"] == "BAD" for d in data) else reply("0")

    service, _, dead = service_with(handler)
    chunk = [item(m, 1) for m in ("A", "B", "BAD", "C", "D", "E", "F")]
    accepted = await service._push_dossier_chunk(chunk, False, _Batch())
    assert sorted(i.ma_ho_so for i in accepted) == ["A", "B", "C", "D", "E", "F"]
    assert dead == ["dossier:BAD:1"]
    assert service.dossiers["BAD"].outcome == "rejected"


async def test_statistics_are_pushed_under_a_steady_stream_of_changes() -> None:
    """A live worker republishes partials every few seconds: the debounce alone would never fire."""
    clock = [0.0]
    now = datetime(2021, 3, 15, tzinfo=UTC)
    def builder(ky: str, unit: str, tier: str, counts: Counter[str], at: datetime) -> dict[str, Any] | None:
        return {"ky": ky, "n": sum(counts.values())} if counts else None

    lane = StatsLane(now=lambda: now, debounce_s=5.0, min_interval_s=60.0, interval_s=3600.0,
                     monotonic=lambda: clock[0], builder=builder)
    lane.ready = True
    due: list[str] = []
    for step in range(100):  # a change every 2 s: never 5 s of quiet
        clock[0] = 2.0 * step
        counts = {count_key("received", "MOT_PHAN", "TRUC_TUYEN", "2021-03"): step + 1}
        lane.apply(UnitFigures(partition=0, unit_code="14767", unit_tier="XA", generated_at=now, counts=counts))
        await lane.refresh()
        due = [p.key for p in lane.due()]
        if due:
            break
    assert due == ["stats|2021-03|14767"], "no statistics due while changes kept coming"
    assert clock[0] <= 62.0  # one min interval after it became pending


# --------------------------------------------------------------------------- statistics of historic periods


_WALL_CLOCK_2026 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def _figures_in(*periods: str, n: int = 3) -> dict[str, int]:
    """A unit's counts: ``n`` online level-4 dossiers received in each of ``periods``."""
    return {count_key("received", "TOAN_TRINH", "TRUC_TUYEN", ky): n for ky in periods}


async def _lane_history(
    periods: tuple[str, ...], history_from: date | None, history_to: date | None = None
) -> tuple[list[str], list[str], dict[str, dict[str, Any]]]:
    """Rebuild one unit (14767) with figures in ``periods`` at a 2026 wall clock.

    Returns the periods the builder was asked for, the periods that became pending (sorted), and
    their bodies. The builder is the real :class:`DomainStatsBuilder` (it reports nothing for a
    period without figures).
    """
    real = DomainStatsBuilder(default_registry(), None)
    asked: list[str] = []

    def builder(ky: str, unit: str, tier: str, counts: Counter[str], now: datetime) -> dict[str, Any] | None:
        asked.append(ky)
        return real(ky, unit, tier, counts, now)

    lane = StatsLane(now=lambda: _WALL_CLOCK_2026, debounce_s=0.0, min_interval_s=300.0, interval_s=3600.0,
                     builder=builder, history_from=history_from, history_to=history_to)
    lane.ready = True
    lane.apply(UnitFigures(partition=0, unit_code="14767", unit_tier="XA", generated_at=_WALL_CLOCK_2026,
                           counts=_figures_in(*periods)))
    await lane.refresh()
    pending = {p.ky: p.body for p in lane.pending.values()}
    return asked, sorted(pending), pending


async def test_without_history_from_a_unit_with_only_2021_figures_gets_no_2021_body() -> None:
    asked, pending, _ = await _lane_history(("2021-03", "2021-Q1", "2021"), None)
    assert pending == []
    # Only the periods around the 2026 wall clock were even considered.
    assert sorted(asked) == sorted(periods_around(_WALL_CLOCK_2026))
    assert not any(ky.startswith("2021") for ky in asked)


async def test_with_history_from_the_2021_periods_with_figures_are_pending_with_those_around_now() -> None:
    periods = ("2021-03", "2021-Q1", "2021", "2026-05", "2026-Q2", "2026")
    asked, pending, bodies = await _lane_history(periods, date(2021, 1, 1))
    # The builder is asked for the periods around now (2026-04 and 2026-Q1 have no figure, 2025
    # neither: it reports nothing for them) plus the historic periods that have figures.
    assert asked == ["2021", "2021-03", "2021-Q1", "2025", "2026", "2026-04", "2026-05", "2026-Q1", "2026-Q2"]
    assert pending == ["2021", "2021-03", "2021-Q1", "2026", "2026-05", "2026-Q2"]
    assert bodies["2021-Q1"]["ky"] == "2021-Q1"
    assert bodies["2021-Q1"]["ma_don_vi"] == "14767"
    level4 = next(r for r in bodies["2021-03"]["theo_muc_do"] if r["muc_do"] == 4)
    assert level4["tiep_nhan_truc_tuyen"] == 3


async def test_a_period_starting_before_history_from_is_not_built() -> None:
    # history from February 2021: January, Q1 and the year 2021 all start on 2021-01-01, too early.
    _, pending, _ = await _lane_history(("2021-01", "2021-02", "2021-Q1", "2021"), date(2021, 2, 1))
    assert pending == ["2021-02"]


async def test_unchanged_historic_bodies_do_not_become_pending_again() -> None:
    lane = StatsLane(now=lambda: _WALL_CLOCK_2026, debounce_s=0.0, min_interval_s=300.0, interval_s=3600.0,
                     builder=DomainStatsBuilder(default_registry(), None), history_from=date(2021, 1, 1))
    lane.ready = True
    lane.apply(UnitFigures(partition=0, unit_code="14767", unit_tier="XA", generated_at=_WALL_CLOCK_2026,
                           counts=_figures_in("2021-03", "2021-Q1", "2021")))
    assert await lane.refresh() == 3
    for p in list(lane.pending.values()):  # the portal acknowledged all three
        lane.done(p, StatsState(ky=p.ky, ma_don_vi=p.unit, digest=p.digest, outcome="pushed"))
    assert lane.pending == {}
    lane.catalogue_changed()
    assert await lane.refresh() == 0  # same figures, same digests
    lane.apply(UnitFigures(partition=1, unit_code="14767", unit_tier="XA", generated_at=_WALL_CLOCK_2026,
                           counts=_figures_in("2021-03", "2021-Q1", "2021", n=1)))
    assert await lane.refresh() == 3  # another partition's dossiers change all three
    assert sorted(p.ky for p in lane.pending.values()) == ["2021", "2021-03", "2021-Q1"]


@pytest.mark.parametrize("month", ["2021-13", "March", "2021-3", "2021-03-01", "0000-01"])
def test_stats_history_from_must_be_a_month(month: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        PortalSettings(stats_history_from=month)
    message = str(err.value)
    assert "YYYY-MM" in message
    assert '"2021-01"' in message  # an example of what to write
    assert repr(month) in message  # and what was wrong


def test_stats_history_from_names_a_first_day_and_reaches_the_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert PortalSettings().stats_history_start is None
    assert PortalSettings(stats_history_from="2021-03").stats_history_start == date(2021, 3, 1)
    monkeypatch.setenv("DVC_HUB_PORTAL__STATS_HISTORY_FROM", "2020-01")
    assert load_settings().portal.stats_history_start == date(2020, 1, 1)


async def test_a_period_starting_after_history_to_is_not_built() -> None:
    # A replay of January 2020 - March 2021 in 2026: its open dossiers carry into every later month,
    # but only the periods starting within the replay are history (2021 and 2021-Q1 start in it).
    periods = ("2020-12", "2021-03", "2021-04", "2021-Q1", "2021-Q2", "2021", "2022", "2022-01")
    _, pending, _ = await _lane_history(periods, date(2020, 1, 1), date(2021, 4, 1))
    assert pending == ["2020-12", "2021", "2021-03", "2021-Q1"]
