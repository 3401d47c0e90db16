"""Every page failure is a bad page (dead letter once, stream held, degraded); every refusal is dead-lettered once."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import httpx
import pytest

from connectors.motcua.connector import MotCuaConnector
from connectors.qlvb.connector import QlvbConnector
from connectors.sdk import Body, Connector, Cursor, CursorStream, MemorySink, MemoryStateStore, Page
from connectors.sdk.testing import sync_cycles
from tests.connectors.fakes import CCCD, NAME, FakeMotCua, FakeQlvb
from tests.connectors.test_contract import MOTCUA, QLVB


def _deep_xml(depth: int) -> str:
    return ('<?xml version="1.0"?><DanhSachSuKien con_nua="false"><SuKien id="x">' + "<a>" * depth
            + "</a>" * depth + "</SuKien></DanhSachSuKien>")


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deeply_nested_xml_page_is_one_dead_letter_and_the_stream_holds(depth: int) -> None:
    """Fails (before: RecursionError escaped the connector, no dead letter, "unexpected" in the log)."""
    fake = FakeQlvb()
    fake.script = [_deep_xml(depth)] * 12  # every attempt of four cycles
    result = asyncio.run(sync_cycles(QlvbConnector, QLVB, httpx.MockTransport(fake), cycles=4))
    letters = [d for _, d in result.sink.letters]
    assert [d.reason for d in letters] == ["too_deep"]
    assert not result.sink.records
    health = result.engine.health()
    assert health["status"] == "degraded"
    assert health["last_error"]["key"] == "bad_page"
    assert all(r.held == {"events": "too_deep"} for r in result.reports)
    assert "events" not in result.state.cursors  # held: the cursor did not move past the page
    # Once the source serves a readable page again, the stream goes on from where it held.
    fake.script = []
    after = asyncio.run(sync_cycles(QlvbConnector, QLVB, httpx.MockTransport(fake), engine=result.engine))
    assert after.reports[-1].ok
    assert after.sink.records


class Flaky(CursorStream):
    """A stream whose parser raises whatever it is told to (a third-party connector's bugs)."""

    name = "items"
    path = "/items"
    kind = "dossier"
    topic = "raw_motcua"
    primary_key = "MaHoSo"
    version_key = "PhienBan"
    raises: ClassVar[list[BaseException]] = []

    def initial_cursor(self) -> Cursor:
        return {"after": 0}

    def request_params(self, cursor: Cursor) -> dict[str, Any]:
        return {"after": cursor["after"]}

    def parse_page(self, body: Body, cursor: Cursor) -> Page:
        if self.raises:
            raise self.raises.pop(0)
        return Page([], checkpoint=None, has_more=False)


class FlakyConnector(Connector):
    type = "flaky"
    streams = (Flaky,)


FLAKY = QLVB.model_copy(update={"name": "flaky", "type": "flaky", "auth": QLVB.auth.model_copy()})


@pytest.mark.parametrize("errors", [
    [KeyError("Nguyễn Văn An"), TypeError("x"), ValueError(CCCD), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
     RecursionError(), ZeroDivisionError(), AttributeError("y"), IndexError(NAME), LookupError(), OSError("z"),
     RuntimeError("w"), NotImplementedError()],
])
def test_any_exception_of_a_parser_is_a_bad_page_dead_lettered_once(errors: list[BaseException]) -> None:
    """Each cycle's page raises another exception: one dead letter in all, the stream held and degraded,
    the exception's type named, never its message (which quotes the data)."""
    Flaky.raises = list(errors)
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={}))
    result = asyncio.run(sync_cycles(FlakyConnector, FLAKY, transport, cycles=4))
    letters = [d for _, d in result.sink.letters]
    assert len(letters) == 1, [d.detail for d in letters]
    assert "ValueError" in letters[0].detail  # the third attempt's exception (each cycle fetches 3 times)
    assert letters[0].reason == "schema"
    assert NAME not in letters[0].value().decode()
    assert CCCD not in letters[0].value().decode()
    assert result.engine.health()["status"] == "degraded"
    assert all(r.held for r in result.reports)
    assert not Flaky.raises  # every exception was met (three fetches per cycle)


def test_cancellation_is_not_a_bad_page() -> None:
    Flaky.raises = [asyncio.CancelledError()]
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={}))
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(sync_cycles(FlakyConnector, FLAKY, transport))


#: The fake's last change second: the cursor stands there, so every cycle reads that second again.
LAST = "20210115093600"


def test_a_refused_record_is_dead_lettered_once_over_cycles_and_restarts() -> None:
    """A dossier without its key, in the cursor's second, which every cycle re-reads (and every look-back
    window again): exactly one dead letter, even after a restart.

    Fails (before: one dead letter per poll cycle)."""
    fake = FakeMotCua()
    fake.put("", LAST)  # no MaHoSo: missing_key at the edge
    store = MemoryStateStore()
    sink = MemorySink()
    first = asyncio.run(sync_cycles(MotCuaConnector, MOTCUA, httpx.MockTransport(fake), cycles=5, store=store,
                                    sink=sink))
    # A restart: a new engine on the saved state, which look-back re-reads the same second again.
    second = asyncio.run(sync_cycles(MotCuaConnector, MOTCUA, httpx.MockTransport(fake), cycles=3, store=store,
                                     sink=sink))
    letters = [d for _, d in sink.letters]
    assert [d.reason for d in letters] == ["missing_key"]
    assert letters[0].event_id
    assert letters[0].event_id.startswith("refused:")
    assert sum(r.refusals_repeated for r in first.reports + second.reports) >= 6
    assert sink.records  # the good dossiers went through


def test_a_changed_refused_record_is_a_new_dead_letter() -> None:
    """The id is the record's content: a corrected-but-still-refused record is dead-lettered again."""
    fake = FakeMotCua()
    fake.put("", LAST)
    result = asyncio.run(sync_cycles(MotCuaConnector, MOTCUA, httpx.MockTransport(fake), cycles=2))
    fake.rows[""]["MucDo"] = 3
    asyncio.run(sync_cycles(MotCuaConnector, MOTCUA, httpx.MockTransport(fake), engine=result.engine,
                            sink=result.sink))
    assert [d.reason for _, d in result.sink.letters] == ["missing_key", "missing_key"]
