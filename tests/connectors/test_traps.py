"""Each trap of contracts.md against the connectors, with fake sources (no network)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from connectors.motcua.connector import MotCuaConnector
from connectors.portal.connector import PortalConnector
from connectors.qlvb.connector import QlvbConnector
from connectors.sdk import Connector, Fields, InvalidAuth, MemorySink, MemoryStateStore, SourceClient, SourceUnavailable
from connectors.sdk.auth import NoAuthenticator
from connectors.sdk.edge import safe_excerpt
from connectors.sdk.errors import scrub_url
from connectors.sdk.testing import SyncResult, sync_cycles
from hub.config import ConnectorInstance, RetrySettings
from tests.connectors.fakes import CCCD, NAME, FakeMotCua, FakePortal, FakeQlvb
from tests.connectors.test_contract import MOTCUA, PORTAL, QLVB


def instance(base: ConnectorInstance, **changes: Any) -> ConnectorInstance:
    return ConnectorInstance.model_validate({**base.model_dump(), **changes})


def run(cls: type[Connector], inst: ConnectorInstance, fake: Any, **kw: Any) -> SyncResult:
    return asyncio.run(sync_cycles(cls, inst, httpx.MockTransport(fake), **kw))


def ids(result: SyncResult) -> set[str]:
    return set(result.sink.event_ids())


# ------------------------------------------------------------------ HTTP client


def test_retry_after_is_honoured_and_backoff_is_capped():
    answers = [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(503),
               httpx.Response(200, json={"ok": 1})]
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    async def go() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: answers.pop(0))) as http:
            client = SourceClient("http://s", http, NoAuthenticator(), sleep=sleep,
                                  retry=RetrySettings(base_delay_s=0.5, max_delay_s=2.0), rate_limit_per_s=1000)
            return await client.fetch("/x", parse=lambda b: b.json())

    assert asyncio.run(go()) == {"ok": 1}
    assert sleeps[0] >= 7.0  # Retry-After wins over a smaller jitter
    assert 0 <= sleeps[1] <= 2.0  # full jitter under the cap


def test_error_in_a_200_body_is_a_failure_never_no_data():
    fake = FakeMotCua()
    fake.script = ["error_body"] * 50
    result = run(MotCuaConnector, instance(MOTCUA, retry={"max_attempts": 3}), fake)
    assert result.sink.records == []
    assert result.reports[0].errors == {"dossiers": "cannot_connect", "catalogue": "cannot_connect"}
    assert "dossiers" not in result.state.cursors  # the cursor did not move on "no data"


def test_every_transient_fault_is_retried_and_nothing_is_lost():
    clean = run(MotCuaConnector, MOTCUA, FakeMotCua())
    fake = FakeMotCua()
    fake.script = [429, 500, 502, 503, 504, "reset", "timeout", "error_body"]
    faulty = run(MotCuaConnector, instance(MOTCUA, retry={"max_attempts": 10}), fake)
    assert ids(faulty) == ids(clean)
    assert faulty.reports[0].ok


def test_401_is_invalid_auth_without_a_storm():
    fake = FakeMotCua(api_key="other")
    result = run(MotCuaConnector, MOTCUA, fake)
    assert result.reports[0].errors["dossiers"] == "invalid_auth"
    assert len(fake.requests) == 2  # one per stream: a static key is never retried


def test_page_size_1_walks_ties_with_the_sau_tiebreaker():
    fake = FakeMotCua()
    result = run(MotCuaConnector, instance(MOTCUA, page_size=1), fake)
    assert len([r for _, r in result.sink.records if r.kind == "dossier"]) == 5
    assert any("sau=" in str(r.url) for r in fake.requests)


def test_a_change_later_in_the_cursors_second_that_sorts_before_it_is_read_by_the_next_forward_poll():
    # NgayCapNhat has one-second resolution: a dossier changed later in the cursor's second can sort
    # before the cursor's MaHoSo. Read strictly after the cursor it would wait for the next
    # look-back pass (15 s by default); each forward poll starts at the cursor's whole second instead.
    fake = FakeMotCua(now="20210115093700")
    first = run(MotCuaConnector, MOTCUA, fake)
    cursor = first.state.cursors["dossiers"]
    assert (cursor["tu"], cursor["sau"]) == ("20210115093600", "H56.14767-210115-00005")
    fake.put("H56.14767-210115-00000", "20210115093600")  # same second, sorts first
    fake.requests.clear()
    second = run(MotCuaConnector, MOTCUA, fake, engine=first.engine)
    assert ids(second) == {"motcua:H56.14767-210115-00000:1"}  # the re-read second costs no Kafka write
    [page] = [r for r in fake.requests if r.url.path.endswith("/hoso/thaydoi")]
    assert (page.url.params["tu"], page.url.params.get("sau")) == ("20210115093600", None)
    assert not any(r.url.path.endswith("/health") for r in fake.requests)  # a forward poll, not a look-back
    saved = second.state.cursors["dossiers"]
    assert (saved["tu"], saved["sau"]) == (cursor["tu"], cursor["sau"])  # the position never moves back


def test_late_visible_change_is_caught_by_the_lookback_on_the_source_clock():
    fake = FakeMotCua(now="20210115093700")
    store = MemoryStateStore()
    first = run(MotCuaConnector, MOTCUA, fake, store=store)
    cursor = first.state.cursors["dossiers"]
    assert cursor["tu"] == "20210115093600"
    # A change stamped before the cursor commits 100 s late (a long transaction).
    fake.put("H56.14767-210115-00099", "20210115093550")
    fake.now = fake.now.replace(second=30)  # source clock 09:37:30
    second = run(MotCuaConnector, MOTCUA, fake, store=store)
    assert "motcua:H56.14767-210115-00099:1" in ids(second)
    # The re-read started at polled_at (09:37:00, source clock) - lookback.
    assert any(r.url.params.get("tu") == "20210115093400" for r in fake.requests)
    saved = second.state.cursors["dossiers"]
    assert (saved["tu"], saved["sau"]) == (cursor["tu"], cursor["sau"])  # the position never moves back
    # ...but the complete second pass moved the look-back anchor to its own start on the source clock.
    assert saved["polled_at"] > cursor["polled_at"]


def test_bad_record_is_dead_lettered_and_the_page_goes_on():
    fake = FakeMotCua()
    fake.put("H56.14767-210115-00007", "20210115094000")
    fake.rows["H56.14767-210115-00007"]["MaHoSo"] = ""  # no key
    result = run(MotCuaConnector, MOTCUA, fake)
    reasons = [d.reason for _, d in result.sink.letters]
    assert reasons == ["missing_key"]
    assert len([r for _, r in result.sink.records if r.kind == "dossier"]) == 5
    letter = result.sink.letters[0][1].model_dump_json()
    assert NAME not in letter
    assert CCCD not in letter


def test_unparseable_page_is_retried_then_dead_lettered_once_and_held():
    fake = FakeMotCua()
    bad = httpx.Response(200, content=b'{"error_code":"0","data":[{"ChuHoSo":"' + NAME.encode() + b'"')
    fake.script = [bad] * 3  # three unreadable answers in a row: more than bad_page_attempts allows
    store, sink = MemoryStateStore(), MemorySink()
    result = run(MotCuaConnector, instance(MOTCUA, options={"catalogue": False}), fake, store=store, sink=sink)
    assert result.reports[0].held == {"dossiers": "invalid_json"}
    assert [d.reason for _, d in sink.letters] == ["invalid_json"]
    assert NAME not in (sink.letters[0][1].excerpt or "")
    # The source recovers: the next cycle reads everything, nothing was skipped.
    again = run(MotCuaConnector, instance(MOTCUA, options={"catalogue": False}), fake, store=store)
    assert len(again.sink.records) == 5


def test_too_large_and_too_deep_are_refused():
    fake = FakeMotCua()
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    fake.put("H56.14767-210115-00008", "20210115094100", Nested=deep)
    result = run(MotCuaConnector, instance(MOTCUA, options={"max_depth": 32}), fake)
    assert "too_deep" in {d.reason for _, d in result.sink.letters}
    small = run(MotCuaConnector, instance(MOTCUA, options={"max_body_bytes": 1024, "catalogue": False}), FakeMotCua())
    assert small.reports[0].held == {"dossiers": "too_large"}


def test_nfd_text_gives_the_same_records_and_ids_as_nfc():
    import unicodedata

    plain = FakeMotCua()
    nfd = FakeMotCua()
    nfd.catalogue = [{k: unicodedata.normalize("NFD", v) if isinstance(v, str) else v for k, v in row.items()}
                     for row in nfd.catalogue]
    a, b = run(MotCuaConnector, MOTCUA, plain), run(MotCuaConnector, MOTCUA, nfd)
    assert ids(a) == ids(b)


# ------------------------------------------------------------------ QLVB


@pytest.mark.parametrize("hostile", [
    '<?xml version="1.0"?><!DOCTYPE D [<!ELEMENT D ANY>]><DanhSachSuKien con_nua="false"/>',
    ('<?xml version="1.0"?><!DOCTYPE D [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><DanhSachSuKien>&b;'
    "</DanhSachSuKien>"),
    ('<?xml version="1.0"?><!DOCTYPE D [<!ENTITY x SYSTEM "file:///etc/passwd">]><DanhSachSuKien>&x;'
    "</DanhSachSuKien>"),
    '<?xml version="1.0"?><DanhSachSuKien con_nua="true"><SuKien id="10',
])
def test_hostile_or_truncated_xml_is_refused_safely_and_retried(hostile):
    clean = run(QlvbConnector, QLVB, FakeQlvb())
    fake = FakeQlvb()
    fake.script = [hostile]
    result = run(QlvbConnector, QLVB, fake)
    assert ids(result) == ids(clean)
    assert len(clean.sink.records) == 5


def test_qlvb_holds_on_persistently_hostile_xml():
    fake = FakeQlvb()
    fake.script = ['<?xml version="1.0"?><!DOCTYPE D [<!ENTITY x SYSTEM "file:///etc/passwd">]><D>&x;</D>'] * 3
    result = run(QlvbConnector, QLVB, fake)
    assert result.reports[0].held == {"events": "hostile_xml"}
    assert [d.reason for _, d in result.sink.letters] == ["hostile_xml"]


def test_qlvb_gaps_and_duplicates_across_pages():
    fake = FakeQlvb()
    fake.duplicate_tail = 1
    result = run(QlvbConnector, instance(QLVB, page_size=2), fake)
    assert len(result.sink.records) == len(set(result.sink.event_ids())) == 5
    assert result.state.cursors["events"]["id"] == 1000010
    keys = {r.key for _, r in result.sink.records}
    assert "doc-1000002" in keys
    assert "H56.14767-210115-00001" in keys
    payloads = [r.payload for _, r in result.sink.records]
    assert all("nguoi_ky" not in p["VanBan"] and CCCD not in p["VanBan"]["trich_yeu"] for p in payloads)


# ------------------------------------------------------------------ portal (its token traps: test_auth.py)


def test_single_pass_offset_paging_really_skips_and_the_connector_does_not():
    # The trap is real: one naive pass misses an item when an earlier one moves during paging.
    naive = FakePortal(items=9)
    naive.move_on_page = 2
    seen = []
    for page in (1, 2, 3, 4):
        req = httpx.Request("GET", f"http://p/api/v1/hoso-truc-tuyen?tu=2000-01-01T00:00:00%2B07:00&trang={page}"
                            "&kich_thuoc=3", headers={"Authorization": "Bearer t1"})
        naive.tokens.add("t1")
        seen += [i["ma_ho_so"] for i in naive(req).json()["response"]["du_lieu"]]
    assert len(set(seen)) < 9
    # The connector reads in passes until nothing is new: every item, and the moved one's new version.
    fake = FakePortal(items=9)
    fake.move_on_page = 2
    result = run(PortalConnector, PORTAL, fake)
    keys = {r.key for _, r in result.sink.records if r.kind == "portal"}
    assert keys == set(fake.items)
    moved = fake.moved[0]
    assert f"portal:{moved}:{fake.items[moved]['cap_nhat_luc']}" in ids(result)


def test_portal_lgsp_error_code_is_retried():
    fake = FakePortal()
    fake.script = ["error_body", 503, "reset"]
    result = run(PortalConnector, PORTAL, fake)
    assert result.reports[0].ok
    assert len([r for _, r in result.sink.records if r.kind == "portal"]) == 7


# ------------------------------------------------------------------ secrets, privacy, crash


def test_secrets_never_reach_logs_or_errors(caplog):
    caplog.set_level(logging.DEBUG)
    fake = FakeMotCua(api_key="the-right-key")
    secret_instance = instance(MOTCUA, auth={"kind": "api_key", "api_key": "SUPERSECRET-KEY-123"})
    result = run(MotCuaConnector, secret_instance, fake)
    assert "SUPERSECRET" not in caplog.text
    assert "SUPERSECRET" not in str(result.engine.health())
    assert "SUPERSECRET" not in repr(secret_instance)
    assert scrub_url("http://u:p@h:1/x?api_key=zz&tu=1") == "http://h:1/x?api_key=%2A%2A%2A&tu=1"


def test_dead_letter_excerpts_mask_personal_fields():
    text = f'{{"ChuHoSo": "{NAME}", "SoGiayToChuHoSo": "{CCCD}", "x": 1}} <VanBan nguoi_ky="{NAME}"/>'
    excerpt = safe_excerpt(text, Fields(keep=("x",))) or ""
    assert NAME not in excerpt
    assert CCCD not in excerpt
    assert '"x": 1' in excerpt  # a field the allow-list keeps stays readable
    assert '"x": 9' in (safe_excerpt(text) or "")  # one it does not keep, only as its shape


class SimulatedCrash(BaseException):
    """Like kill -9: nothing catches it."""


def test_crash_between_produce_and_cursor_save_loses_nothing():
    fake = FakeMotCua()
    store = MemoryStateStore()
    sink = MemorySink()

    async def crash_then_restart() -> SyncResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
            from connectors.sdk import SyncEngine
            from hub.config import TopicSettings

            connector = MotCuaConnector.from_instance(instance(MOTCUA, page_size=2), http)
            engine = SyncEngine(connector, sink=sink, state_store=store, topics=TopicSettings(), privacy_key=b"k")

            def boom(state):
                raise SimulatedCrash

            engine.before_save = boom
            with pytest.raises(SimulatedCrash):
                await engine.run_once()
        assert sink.records
        assert not store.history
        return await sync_cycles(MotCuaConnector, instance(MOTCUA, page_size=2), httpx.MockTransport(fake),
                                 store=store, sink=sink)

    asyncio.run(crash_then_restart())
    expected = {f"motcua:{ma}:{row['PhienBan']}" for ma, row in fake.rows.items()}
    assert expected <= set(sink.event_ids())
    with pytest.raises(SourceUnavailable):
        raise SourceUnavailable("x", reason="y")
    with pytest.raises(InvalidAuth):
        raise InvalidAuth("y")


def test_an_empty_catalogue_is_read_again_soon_not_an_hour_later():
    """The source answered an empty catalogue (still being set up): the next read is due in 30 s, not in
    ``refresh_every`` (an hour); a catalogue that came back full waits the whole refresh interval."""
    from connectors.sdk import SyncEngine
    from connectors.sdk.engine import EMPTY_SNAPSHOT_RETRY_S
    from hub.config import TopicSettings

    fake = FakeMotCua()
    published, fake.catalogue = fake.catalogue, []
    clock = [1000.0]
    sink = MemorySink()

    async def cycles() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
            connector = MotCuaConnector.from_instance(MOTCUA, http)
            engine = SyncEngine(connector, sink=sink, state_store=MemoryStateStore(), topics=TopicSettings(),
                                privacy_key=b"k", monotonic=lambda: clock[0])
            reads = []

            async def read_at(t: float) -> None:
                clock[0] = t
                before = sum(1 for r in fake.requests if r.url.path.endswith("/thutuc"))
                await engine.run_once()
                reads.append(sum(1 for r in fake.requests if r.url.path.endswith("/thutuc")) - before)

            await read_at(1000.0)                                   # empty
            await read_at(1000.0 + EMPTY_SNAPSHOT_RETRY_S - 1)      # not yet due
            fake.catalogue = published
            await read_at(1000.0 + EMPTY_SNAPSHOT_RETRY_S)          # due again: now full
            await read_at(1000.0 + EMPTY_SNAPSHOT_RETRY_S + 60)     # full: waits the refresh interval
            return reads

    assert asyncio.run(cycles()) == [1, 0, 1, 0]
    assert [e for e in sink.event_ids() if "|1.003560.000.00.00.H56:" in e], "the catalogue read second was produced"
