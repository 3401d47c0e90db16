"""The hub's one authentication module (connectors.sdk.auth), from both sides that use it.

The portal SOURCE connector (through the SDK's SourceClient) and the portal sync TARGET (through
``Authenticator.httpx_auth`` on its httpx client) share the schemes, the token cache rules and the
one access-key signature format. No network: httpx.MockTransport and fake clocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.portal.connector import PortalConnector
from connectors.sdk import Connector, InvalidAuth, MemoryStateStore, SourceClient
from connectors.sdk.auth import (
    AccessKeyAuthenticator,
    OAuth2ClientCredentialsAuthenticator,
    build_authenticator,
    sign,
)
from connectors.sdk.testing import SyncResult, sync_cycles
from hub.config import AccessKeyAuth, ConnectorInstance, OAuth2ClientCredentials
from hub.sync.client import PortalClient
from hub.sync.delivery import FakeClock
from hub.sync.errors import Transient
from tests.connectors.fakes import FakePortal
from tests.connectors.test_contract import PORTAL

OK = {"code": 200, "status": "OK", "response": {"error_code": "0", "message": ""}}
BASE = "http://portal"


class Gateway:
    """A scripted LGSP gateway: a token endpoint (counting fetches) and a handler for the rest."""

    def __init__(self, handler: Any = None, ttl: int = 3600, envelope: bool = False) -> None:
        self.handler = handler or (lambda r: httpx.Response(200, json=OK))
        self.ttl = ttl
        self.envelope = envelope
        self.tokens = 0
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> Any:
        if request.url.path == "/oauth2/token":
            assert request.headers["Authorization"].startswith("Basic ")
            self.tokens += 1
            token = {"access_token": f"t{self.tokens}", "token_type": "Bearer", "expires_in": self.ttl}
            return httpx.Response(200, json={"code": 200, "response": token} if self.envelope else token)
        self.calls.append(request)
        return self.handler(request)  # a Response, or a coroutine MockTransport awaits

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self), base_url=BASE)


def oauth(clock: FakeClock | None = None, margin: float = 60.0) -> OAuth2ClientCredentialsAuthenticator:
    settings = OAuth2ClientCredentials(client_id="dvc-hub", client_secret=SecretStr("s3cret"), refresh_margin_s=margin)
    if clock is None:
        return OAuth2ClientCredentialsAuthenticator(settings, BASE)
    return OAuth2ClientCredentialsAuthenticator(settings, BASE, clock=clock.now)


async def revoked_t1(request: httpx.Request) -> httpx.Response:
    """The gateway revoked the first token early (async: concurrent requests really overlap)."""
    await asyncio.sleep(0.01)
    if request.headers["Authorization"] == "Bearer t1":
        return httpx.Response(401, json={"error_code": "401"})
    return httpx.Response(200, json=OK)


# ------------------------------------------------------------------ OAuth2: caching, single flight, refresh


async def test_concurrent_requests_share_one_token_fetch():
    gateway = Gateway()
    async with gateway.client() as http:
        auth = oauth().httpx_auth(http)
        await asyncio.gather(*(http.get("/x", auth=auth) for _ in range(25)))
    assert gateway.tokens == 1
    assert {r.headers["Authorization"] for r in gateway.calls} == {"Bearer t1"}


async def test_token_is_refreshed_before_it_expires_and_the_envelope_is_understood():
    clock = FakeClock(1000.0)
    gateway = Gateway(ttl=300, envelope=True)
    async with gateway.client() as http:
        auth = oauth(clock).httpx_auth(http)
        await http.get("/x", auth=auth)
        clock.t += 239  # 61 s before expiry: still outside the 60 s margin
        await http.get("/x", auth=auth)
        assert gateway.tokens == 1
        clock.t += 2  # within 60 s of expiry -> refreshed proactively, no 401 needed
        await http.get("/x", auth=auth)
    assert gateway.tokens == 2
    assert [r.headers["Authorization"] for r in gateway.calls] == ["Bearer t1", "Bearer t1", "Bearer t2"]


async def test_a_short_lived_token_is_used_for_half_its_life_not_refetched_every_time():
    clock = FakeClock(0.0)
    gateway = Gateway(ttl=30)  # shorter than the 60 s margin
    async with gateway.client() as http:
        auth = oauth(clock).httpx_auth(http)
        for _ in range(5):
            await http.get("/x", auth=auth)
        clock.t += 16
        await http.get("/x", auth=auth)
    assert gateway.tokens == 2


# ------------------------------------------------------------------ 401: one refresh, one retry, no storm


async def test_target_side_401_gets_one_refresh_and_one_retry_then_gives_up():
    gateway = Gateway(lambda r: httpx.Response(401, json={"error_code": "401"}))
    async with gateway.client() as http:
        client = PortalClient(http, oauth().httpx_auth(http))
        with pytest.raises(Transient) as err:
            await client.send("POST", "/api/v1/dongbo/tiendo", {"data": []}, "k")
    assert err.value.reason == "auth"
    assert gateway.tokens == 2  # the first token and exactly one renewal
    assert len(gateway.calls) == 2  # the request and exactly one retry


async def test_target_side_revoked_token_is_renewed_once_for_many_concurrent_401s():
    gateway = Gateway(revoked_t1)
    async with gateway.client() as http:
        authenticator = oauth()
        await authenticator.token(http)
        auth = authenticator.httpx_auth(http)
        answers = await asyncio.gather(*(http.get("/x", auth=auth) for _ in range(20)))
    assert all(a.status_code == 200 for a in answers)
    assert gateway.tokens == 2  # no 401 storm: one renewal for all twenty
    assert len(gateway.calls) == 40  # each request exactly once more


async def test_source_side_revoked_token_is_renewed_once_for_many_concurrent_401s():
    gateway = Gateway(revoked_t1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as http:
        authenticator = oauth()
        await authenticator.token(http)
        client = SourceClient(BASE, http, authenticator, rate_limit_per_s=1000)
        answers = await asyncio.gather(*(client.fetch("/x", parse=lambda b: b.json()) for _ in range(20)))
    assert answers == [OK] * 20
    assert gateway.tokens == 2
    assert authenticator.fetches == 2


async def test_a_refused_client_fails_fast_on_both_sides():
    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway), base_url=BASE) as http:
        authenticator = oauth()
        with pytest.raises(InvalidAuth, match="check client_id"):
            await SourceClient(BASE, http, authenticator).fetch("/x", parse=lambda b: b)
        with pytest.raises(Transient) as err:
            await PortalClient(http, authenticator.httpx_auth(http)).send("PUT", "/api/v1/x", {}, "k")
    assert err.value.reason == "auth"
    assert "s3cret" not in str(err.value)


# ------------------------------------------------------------------ the one access-key signature format


def test_access_key_signature_is_the_documented_string_on_both_sides():
    at = datetime(2021, 1, 15, 1, 30, tzinfo=UTC)
    authenticator = build_authenticator(AccessKeyAuth(access_key="AK1", secret_key=SecretStr("sk-secret")),
                                        base_url=BASE)
    assert isinstance(authenticator, AccessKeyAuthenticator)
    authenticator._now = lambda: at  # fixed time: the signature must be reproducible
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OK)

    async def both() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(gateway), base_url=BASE) as http:
            # target side: a POST with a body and a query
            await http.post("/api/v1/dongbo/hoso?z=1&a=2", content=b'{"a":1}', auth=authenticator.httpx_auth(http))
            # source side: a GET through the SDK's client, parameters in another order
            await SourceClient(BASE, http, authenticator).fetch("/api/v1/hoso-truc-tuyen",
                                                                params={"trang": 2, "kich_thuoc": 50},
                                                                parse=lambda b: b)

    asyncio.run(both())
    post, get = seen
    ts = "20210115T013000Z"
    # Recomputed here from docs/portal-sync.md, independently of the module's own code.
    def documented(method: str, path: str, query: str, body: bytes) -> str:
        text = "\n".join([method, path, query, "20210115T013000Z", hashlib.sha256(body).hexdigest()])
        return hmac.new(b"sk-secret", text.encode(), hashlib.sha256).hexdigest()

    assert post.headers["X-Access-Key"] == get.headers["X-Access-Key"] == "AK1"
    assert post.headers["X-Timestamp"] == "20210115T013000Z"
    assert post.headers["X-Signature"] == documented("POST", "/api/v1/dongbo/hoso", "a=2&z=1", b'{"a":1}')
    assert get.headers["X-Signature"] == documented("GET", "/api/v1/hoso-truc-tuyen", "kich_thuoc=50&trang=2", b"")
    assert get.headers["X-Signature"] == sign("sk-secret", method="get", path="/api/v1/hoso-truc-tuyen",
                                              query="trang=2&kich_thuoc=50", timestamp=ts, body=b"")
    # Another path, query or body is another signature; the secret never travels.
    assert sign("sk-secret", method="POST", path="/api/v1/dongbo/tiendo", query="a=2&z=1", timestamp=ts,
                body=b'{"a":1}') != post.headers["X-Signature"]
    assert sign("sk-secret", method="POST", path="/api/v1/dongbo/hoso", query="a=2&z=1", timestamp=ts,
                body=b'{"a":2}') != post.headers["X-Signature"]
    assert all("sk-secret" not in str(r.headers) for r in seen)


# ------------------------------------------------------------------ the portal connector's token traps


def run(cls: type[Connector], inst: ConnectorInstance, fake: Any, **kw: Any) -> SyncResult:
    return asyncio.run(sync_cycles(cls, inst, httpx.MockTransport(fake), **kw))


def test_portal_token_is_cached_and_a_revoked_token_costs_one_refresh():
    fake = FakePortal(items=30)
    store = MemoryStateStore()
    run(PortalConnector, PORTAL, fake, store=store)
    assert fake.token_fetches == 1
    fake.revoke_all()
    fake.upsert("H56.14767-210119-09999", fake.clock)
    second = run(PortalConnector, PORTAL, fake, store=store)
    assert "portal:H56.14767-210119-09999:" + fake.clock.isoformat(timespec="seconds") in second.sink.event_ids()


def test_portal_revocation_mid_run_one_refresh_one_retry():
    fake = FakePortal(items=30)
    original = fake.__call__
    calls = {"n": 0}

    def revoking(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/oauth2/token":
            calls["n"] += 1
            if calls["n"] == 3:
                fake.revoke_all()
        response: httpx.Response = original(request)
        return response

    result = asyncio.run(sync_cycles(PortalConnector, PORTAL, httpx.MockTransport(revoking)))
    assert result.reports[0].ok
    assert fake.unauthorized == 1
    assert fake.token_fetches == 2


def test_portal_wrong_secret_is_invalid_auth_without_a_storm():
    fake = FakePortal()
    bad = ConnectorInstance.model_validate({**PORTAL.model_dump(),
                                            "auth": {"kind": "oauth2", "client_id": "dvc-hub", "client_secret": "x"}})
    result = run(PortalConnector, bad, fake)
    assert result.reports[0].errors["submissions"] == "invalid_auth"
    assert fake.token_fetches == 0  # refused at the token endpoint, never a bearer call
