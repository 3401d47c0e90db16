"""Unit tests of the portal sync (no network, no broker): httpx.MockTransport and fake clocks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from hub.config import PortalSettings, RetrySettings, Settings
from hub.sync.auth import AccessKeySignature, OAuth2ClientCredentials, sign
from hub.sync.client import PortalClient, parse_retry_after
from hub.sync.delivery import Backoff, CircuitBreaker, Deliverer, FakeClock
from hub.sync.errors import Rejected, Transient
from hub.sync.outbox import DossierState, idempotency_key, new_progress_rows, newest_per_dossier, portal_dossier
from hub.sync.service import SyncService, _Batch
from schemas.figures import OutboxDossier

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


# ------------------------------------------------------------------ auth


async def test_concurrent_requests_share_one_token_refresh():
    portal = Portal(lambda r: httpx.Response(200, json=OK))
    async with portal.client() as http:
        auth = OAuth2ClientCredentials(http, "/oauth2/token", "id", "secret")
        await asyncio.gather(*(http.get("/x", auth=auth) for _ in range(25)))
    assert portal.tokens == 1
    assert {r.headers["Authorization"] for r in portal.calls} == {"Bearer t1"}


async def test_401_gets_one_refresh_and_one_retry_then_gives_up():
    portal = Portal(lambda r: httpx.Response(401, json={"error_code": "401"}))
    async with portal.client() as http:
        client = PortalClient(http, OAuth2ClientCredentials(http, "/oauth2/token", "id", "secret"))
        with pytest.raises(Transient) as err:
            await client.send("POST", "/api/v1/dongbo/tiendo", {"data": []}, "k")
    assert err.value.reason == "auth"
    assert portal.tokens == 2  # the first token and exactly one renewal
    assert len(portal.calls) == 2  # the request and exactly one retry


async def test_a_revoked_token_is_renewed_once_for_many_concurrent_401s():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401) if request.headers["Authorization"] == "Bearer t1" else httpx.Response(200, json=OK)

    portal = Portal(handler)
    async with portal.client() as http:
        auth = OAuth2ClientCredentials(http, "/oauth2/token", "id", "secret")
        await auth.token()
        answers = await asyncio.gather(*(http.get("/x", auth=auth) for _ in range(20)))
    assert all(a.status_code == 200 for a in answers)
    assert portal.tokens == 2  # no 401 storm: one renewal for all twenty
    assert len(portal.calls) <= 40  # each request at most once more


async def test_token_is_refreshed_before_it_expires():
    clock = FakeClock(1000.0)
    portal = Portal(lambda r: httpx.Response(200, json=OK), ttl=300)
    async with portal.client() as http:
        auth = OAuth2ClientCredentials(http, "/oauth2/token", "id", "secret", refresh_margin_s=60, clock=clock.now)
        await http.get("/x", auth=auth)
        clock.t += 239  # still inside the margin
        await http.get("/x", auth=auth)
        assert portal.tokens == 1
        clock.t += 2  # 241 s: within 60 s of expiry -> refreshed proactively, no 401 needed
        await http.get("/x", auth=auth)
    assert portal.tokens == 2
    assert [r.headers["Authorization"] for r in portal.calls] == ["Bearer t1", "Bearer t1", "Bearer t2"]


async def test_access_key_signature_covers_method_path_time_and_body():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OK)

    auth = AccessKeySignature("AK1", "sk-secret", clock=lambda: 1_700_000_000.0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://p") as http:
        await http.post("/api/v1/dongbo/hoso?x=1", content=b'{"a":1}', auth=auth)
    request = seen[0]
    expected_msg = "\n".join(["POST", "/api/v1/dongbo/hoso?x=1", "1700000000", hashlib.sha256(b'{"a":1}').hexdigest()])
    expected = hmac.new(b"sk-secret", expected_msg.encode(), hashlib.sha256).hexdigest()
    assert request.headers["X-Access-Key"] == "AK1"
    assert request.headers["X-Timestamp"] == "1700000000"
    assert request.headers["X-Signature"] == expected == sign("sk-secret", "post", "/api/v1/dongbo/hoso?x=1",
                                                              "1700000000", b'{"a":1}')


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
    service._client = PortalClient(http, OAuth2ClientCredentials(http, "/oauth2/token", "id", "s"))
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
