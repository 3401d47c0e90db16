"""The contract test kit: a connector's standard tests in a few lines.

Subclass :class:`ConnectorContract` in a test module, say which connector, which instance and
which fake source to run against, and pytest collects the standard tests::

    import httpx
    from connectors.sdk.testing import ConnectorContract
    from hub.config import ConnectorInstance
    from acme_motcua.connector import AcmeMotcuaConnector
    from tests.fake_source import FakeAcme          # your httpx.MockTransport handler

    class TestAcmeContract(ConnectorContract):
        connector_class = AcmeMotcuaConnector
        instance = ConnectorInstance(name="acme-1", type="acme_motcua", base_url="http://acme.test",
                                     auth={"kind": "api_key", "api_key": "k"})
        bad_auth_instance = instance.model_copy(update={"auth": ...})   # optional
        forbidden_values = ("Nguyễn Văn A", "038090001234")             # personal data the fake serves

        def transport(self) -> httpx.AsyncBaseTransport:
            return httpx.MockTransport(FakeAcme())

The tests (all synchronous, so no pytest plugin is needed):

- ``test_discovered_through_entry_point``: the ``dvc_hub.connectors`` entry point named like the
  type leads to the class (installed metadata, or the package's ``pyproject.toml`` before install);
- ``test_config_validates`` / ``test_config_rejects_unknown_option``;
- ``test_check_ok`` / ``test_check_invalid_auth``: ``check`` against the fake source;
- ``test_first_sync_produces_raw_records``: at least one :class:`RawRecord`, ids ``source:key:version``;
- ``test_no_personal_data``: no personal field names or values anywhere in records, keys or dead letters;
- ``test_event_ids_are_deterministic``: two fresh runs give the same event ids;
- ``test_second_run_from_saved_cursor_adds_nothing``: same process: nothing produced; fresh process
  from the saved cursor: only event ids already produced;
- ``test_clean_final_state``: a JSON cursor per incremental stream, a last success, no dead letters.

:func:`sync_cycles` is the harness the tests use; call it in your own tests too.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from connectors.sdk.base import Connector
from connectors.sdk.engine import CycleReport, SyncEngine
from connectors.sdk.registry import ENTRY_POINT_GROUP, entry_points, load_entry_point
from connectors.sdk.sinks import MemorySink
from connectors.sdk.state import ConnectorState, MemoryStateStore
from hub.config import ConfigError, ConnectorInstance, TopicSettings
from hub.privacy import ADDRESS_FIELDS, NAME_FIELDS, PHONE_FIELDS, is_personal_field, redact_text

__all__ = ["ConnectorContract", "SyncResult", "declared_entry_point", "personal_data_problems", "sync_cycles"]

_PERSONAL_FIELDS = NAME_FIELDS | PHONE_FIELDS | ADDRESS_FIELDS | {"SoGiayToChuHoSo", "SoCCCD", "so_cccd", "cccd"}


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


@dataclass
class SyncResult:
    """What :func:`sync_cycles` saw."""

    sink: MemorySink
    store: MemoryStateStore
    engine: SyncEngine
    reports: list[CycleReport]

    @property
    def state(self) -> ConnectorState:
        """The engine's state after the last cycle."""
        return self.engine.state


async def sync_cycles(
    connector_class: type[Connector],
    instance: ConnectorInstance,
    transport: httpx.AsyncBaseTransport,
    *,
    cycles: int = 1,
    store: MemoryStateStore | None = None,
    sink: MemorySink | None = None,
    engine: SyncEngine | None = None,
    privacy_key: bytes = b"contract-test-key",
) -> SyncResult:
    """Run ``cycles`` poll cycles against ``transport`` with in-memory Kafka; backoff sleeps are skipped.

    Pass ``engine`` to continue in the same "process" (its seen-set), or ``store`` alone to restart
    from saved state as a new process would.
    """
    if engine is not None:
        # Continue the same "process"; a new sink separates what this run produced.
        sink = sink or MemorySink()
        engine.sink = sink
        assert isinstance(engine.store, MemoryStateStore)
        store = engine.store
    sink = sink or MemorySink()
    store = store or MemoryStateStore()
    async with httpx.AsyncClient(transport=transport) as http:
        if engine is None:
            connector = connector_class.from_instance(instance, http, sleep=_no_sleep)
            engine = SyncEngine(connector, sink=sink, state_store=store, topics=TopicSettings(),
                                privacy_key=privacy_key, sleep=_no_sleep)
        else:
            engine.connector.http = http
            engine.connector.client.http = http
        reports = [await engine.run_once() for _ in range(cycles)]
    return SyncResult(sink, store, engine, reports)


def declared_entry_point(connector_class: type[Connector]) -> EntryPoint | None:
    """The entry point for ``connector_class``: installed, else declared in its package's pyproject.toml."""
    installed = entry_points().get(connector_class.type)
    if installed is not None:
        return installed
    module = sys.modules[connector_class.__module__]
    here = Path(module.__file__ or ".").resolve()
    for folder in here.parents:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            table = data.get("project", {}).get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
            value = table.get(connector_class.type)
            return EntryPoint(connector_class.type, value, ENTRY_POINT_GROUP) if value else None
    return None


def personal_data_problems(value: Any, forbidden_values: tuple[str, ...] = (), path: str = "$") -> list[str]:
    """Where ``value`` holds a personal field, an ID/phone-looking number or a forbidden value."""
    problems: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k in _PERSONAL_FIELDS or is_personal_field(k):
                problems.append(f"{path}.{k}: personal field")
            if k == "IdHash":
                continue  # a keyed hash; its hex digits may look like numbers
            problems.extend(personal_data_problems(v, forbidden_values, f"{path}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            problems.extend(personal_data_problems(v, forbidden_values, f"{path}[{i}]"))
    elif isinstance(value, str):
        if redact_text(value) != value:
            problems.append(f"{path}: looks like personal data (an ID number, a phone, an e-mail or a name)")
        problems.extend(f"{path}: contains {f!r}" for f in forbidden_values if f and f in value)
    return problems


class ConnectorContract:
    """Base class of a connector's contract tests (see the module docstring)."""

    connector_class: ClassVar[type[Connector]]
    instance: ClassVar[ConnectorInstance]
    #: The same instance with credentials the fake source refuses (None: the test is skipped, say why).
    bad_auth_instance: ClassVar[ConnectorInstance | None] = None
    #: Personal values the fake source serves; none may appear in anything the connector emits.
    forbidden_values: ClassVar[tuple[str, ...]] = ()
    #: How many cycles make one "run" (a look-back connector may need two to settle).
    cycles: ClassVar[int] = 1

    def transport(self) -> httpx.AsyncBaseTransport:
        """A fresh fake source (an :class:`httpx.MockTransport`, usually)."""
        raise NotImplementedError("return the fake source's transport, e.g. httpx.MockTransport(handler)")

    # ------------------------------------------------------------------ helpers
    def run(self, **kwargs: Any) -> SyncResult:
        """One run of :attr:`cycles` cycles against a fresh fake source."""
        kwargs.setdefault("cycles", self.cycles)
        return asyncio.run(sync_cycles(self.connector_class, self.instance, self.transport(), **kwargs))

    def _check(self, instance: ConnectorInstance) -> str:
        async def go() -> str:
            async with httpx.AsyncClient(transport=self.transport()) as http:
                connector = self.connector_class.from_instance(instance, http, sleep=_no_sleep)
                try:
                    await connector.check()
                except Exception as exc:  # noqa: BLE001 - the key is what the test compares
                    return str(getattr(exc, "key", "unknown"))
                return "ok"

        return asyncio.run(go())

    # ------------------------------------------------------------------ the standard tests
    def test_discovered_through_entry_point(self) -> None:
        """The entry point named like the type leads to this class."""
        ep = declared_entry_point(self.connector_class)
        assert ep is not None, (
            f"no {ENTRY_POINT_GROUP!r} entry point named {self.connector_class.type!r}: declare it in "
            f'pyproject.toml under [project.entry-points."{ENTRY_POINT_GROUP}"]'
        )
        assert load_entry_point(ep) is self.connector_class

    def test_config_validates(self) -> None:
        """The instance is a valid configuration of this type."""
        config = self.connector_class.config_class.from_instance(self.instance)
        assert config.instance.name == self.instance.name
        assert self.instance.type == self.connector_class.type

    def test_config_rejects_unknown_option(self) -> None:
        """A misspelt option is an error naming it, not a silent default."""
        bad = self.instance.model_copy(update={"options": {**self.instance.options, "no_such_option_xyz": 1}})
        with pytest.raises(ConfigError, match="no_such_option_xyz"):
            self.connector_class.config_class.from_instance(bad)

    def test_check_ok(self) -> None:
        """``check`` connects to the fake source."""
        assert self._check(self.instance) == "ok"

    def test_check_invalid_auth(self) -> None:
        """``check`` maps refused credentials to ``invalid_auth``."""
        if self.bad_auth_instance is None:
            pytest.skip("bad_auth_instance not set: the source has no credentials to refuse")
        assert self._check(self.bad_auth_instance) == "invalid_auth"

    def test_first_sync_produces_raw_records(self) -> None:
        """At least one record; every record is a RawRecord with a deterministic id."""
        result = self.run()
        assert result.sink.records, "the first sync produced no record: does the fake source serve any?"
        for _topic, record in result.sink.records:
            assert record.source == self.connector_class.source
            assert record.instance == self.instance.name
            assert record.event_id == f"{record.source}:{record.key}:{record.version}"

    def test_no_personal_data(self) -> None:
        """No names, phones, addresses or ID numbers in records, keys or dead letters."""
        result = self.run()
        problems: list[str] = []
        for _topic, record in result.sink.records:
            problems += personal_data_problems(record.payload, self.forbidden_values, f"{record.event_id}")
            problems += personal_data_problems(record.key, self.forbidden_values, f"{record.event_id}.key")
        for _topic, letter in result.sink.letters:
            problems += personal_data_problems(json.loads(letter.model_dump_json()), self.forbidden_values, "dlq")
        assert not problems, "personal data left the connector:\n" + "\n".join(problems[:20])

    def test_event_ids_are_deterministic(self) -> None:
        """Two independent runs give the same event ids."""
        first, second = self.run(), self.run()
        assert sorted(first.sink.event_ids()) == sorted(second.sink.event_ids())

    def test_second_run_from_saved_cursor_adds_nothing(self) -> None:
        """The cursor is saved; re-running produces no new event id."""
        store = MemoryStateStore()
        transport = self.transport()
        first = asyncio.run(sync_cycles(self.connector_class, self.instance, transport, store=store,
                                        cycles=self.cycles))
        produced = set(first.sink.event_ids())
        again = asyncio.run(sync_cycles(self.connector_class, self.instance, transport, engine=first.engine,
                                        sink=MemorySink()))
        assert again.sink.records == [], "the same process produced records again"
        fresh = asyncio.run(sync_cycles(self.connector_class, self.instance, transport, store=store))
        assert set(fresh.sink.event_ids()) <= produced, "a restart from the saved cursor produced new event ids"

    def test_clean_final_state(self) -> None:
        """A cursor per incremental stream (JSON), a last success, no dead letters from a clean source."""
        result = self.run()
        saved = asyncio.run(result.store.load(self.instance.name))
        assert saved is not None, "no state was saved"
        assert saved.last_success is not None
        for stream in result.engine.connector.stream_objects:
            if stream.incremental:
                assert stream.name in saved.cursors, f"no cursor saved for stream {stream.name}"
                json.dumps(saved.cursors[stream.name])
        assert result.sink.letters == [], f"dead letters from a clean source: {result.sink.letters[:3]}"
        assert all(r.ok for r in result.reports), [r.errors for r in result.reports]
