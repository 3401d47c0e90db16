"""The read API: bearer auth, answers that match the OpenAPI document, and a schemathesis fuzz run."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from pydantic import BaseModel, SecretStr

from hub.sync.api import make_api_app
from hub.sync.metrics import SyncMetrics
from hub.sync.outbox import DossierState

TOKEN = "test-token-123"


class View:
    def stats_body(self, ky: str, unit: str) -> dict[str, Any] | None:
        if unit != "14767" or ky not in ("2021-Q1", "2021-03", "2021"):
            return None
        return {"ky": ky, "ma_don_vi": unit, "cap": "XA", "thoi_diem_tong_hop": "2021-04-01T00:05:00+07:00",
                "theo_muc_do": [{"muc_do": 3, "tiep_nhan": 4, "tiep_nhan_truc_tuyen": 3, "da_giai_quyet": 2,
                                 "dung_han": 2, "truoc_han": 1, "qua_han": 0, "dang_xu_ly": 2,
                                 "qua_han_dang_xu_ly": 0}],
                "thu_tuc": {"muc_do_3": 1, "muc_do_4": 0, "khong_phat_sinh_ho_so": 0}}

    def stats_units(self) -> list[str]:
        return ["14767", "14770"]

    def dossier_state(self, ma_ho_so: str) -> BaseModel | None:
        if ma_ho_so != "H56.14767-210115-00012":
            return None
        return DossierState(ma_ho_so=ma_ho_so, version=3, on_portal=True, outcome="pushed",
                            at=datetime(2021, 1, 15, tzinfo=UTC))

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "caught_up": False, "backlog": {"outbox": 3, "dossiers_pending": 1, "stats_pending": 7}}


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    """The API on a loopback port, served from its own thread and event loop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(make_api_app(View(), [SecretStr("other"), SecretStr(TOKEN)], SyncMetrics().registry))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{holder['port']}"
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_bearer_token_required_and_answers(api_url):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{api_url}/api/v1/thongke/2021-Q1/14767").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.get(f"{api_url}/api/v1/thongke/2021-Q1/14767", headers=wrong).status_code == 401
    body = httpx.get(f"{api_url}/api/v1/thongke/2021-Q1/14767", headers=auth).json()
    assert body["theo_muc_do"][0]["tiep_nhan"] == 4
    assert httpx.get(f"{api_url}/api/v1/thongke/2021-Q5/14767", headers=auth).status_code == 400
    assert httpx.get(f"{api_url}/api/v1/thongke/2020/14767", headers=auth).status_code == 404
    assert [b["ma_don_vi"] for b in httpx.get(f"{api_url}/api/v1/thongke/2021", headers=auth).json()["du_lieu"]] == [
        "14767"]
    state = httpx.get(f"{api_url}/api/v1/dongbo/H56.14767-210115-00012", headers=auth).json()
    assert state["version"] == 3
    assert state["on_portal"] is True
    # The backlog contract `dvc-hub status` reads (plan12.md): no token needed.
    assert httpx.get(f"{api_url}/healthz").json() == {
        "status": "ok", "caught_up": False, "backlog": {"outbox": 3, "dossiers_pending": 1, "stats_pending": 7}}
    assert "dvchub_portal_breaker_state" in httpx.get(f"{api_url}/metrics").text
    assert httpx.post(f"{api_url}/healthz").status_code == 405


def test_schemathesis_finds_no_server_error_or_schema_violation(api_url, tmp_path: Path):
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    assert exe, "install the dev extras: schemathesis==4.32.5"
    result = subprocess.run(
        [exe, "run", f"{api_url}/openapi.json", "--checks", "all", "--max-examples", "25", "--seed", "7",
         "-H", f"Authorization: Bearer {TOKEN}", "--workers", "2"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # Not vacuous: every operation was exercised.
    assert "6 passed" in result.stdout or "6 operations" in result.stdout, result.stdout[-3000:]


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made for this test run with the openssl command line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_the_api_serves_https_with_the_configured_certificate(self_signed: tuple[Path, Path]) -> None:
    import ssl

    from hub.config import ApiSettings
    from hub.sync.api import server_ssl_context

    cert, key = self_signed
    api = ApiSettings(tokens=[SecretStr(TOKEN)], tls_certfile=cert, tls_keyfile=key)
    context = server_ssl_context(api)
    assert context is not None
    assert server_ssl_context(ApiSettings()) is None  # no certificate: plain http, as before

    async def scenario() -> None:
        runner = web.AppRunner(make_api_app(View(), api.tokens, None))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        trust = ssl.create_default_context(cafile=str(cert))
        try:
            async with httpx.AsyncClient(verify=trust) as client:
                r = await client.get(f"https://127.0.0.1:{port}/api/v1/thongke/2021-Q1/14767",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
                assert r.status_code == 200
                assert r.json()["ma_don_vi"] == "14767"
            async with httpx.AsyncClient() as client:  # the system trust store does not know it
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"https://127.0.0.1:{port}/healthz")
                with pytest.raises(httpx.HTTPError):  # no clear-text answer on the TLS port
                    await client.get(f"http://127.0.0.1:{port}/healthz", timeout=3)
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_tls_settings_say_what_is_wrong(tmp_path: Path, self_signed: tuple[Path, Path]) -> None:
    from pydantic import ValidationError

    from hub.config import ApiSettings, ConfigError
    from hub.sync.api import server_ssl_context

    cert, _ = self_signed
    with pytest.raises(ValidationError, match="go together"):
        ApiSettings(tls_certfile=cert)
    with pytest.raises(ConfigError, match=r"api\.tls_certfile"):
        server_ssl_context(ApiSettings(tls_certfile=cert, tls_keyfile=tmp_path / "missing.pem"))
