"""The declarative base classes: a :class:`Connector` is a name, a config model and streams.

A stream declares where its records live and what identifies them, and overrides one or two
hooks; the SDK does the rest (HTTP retries and rate limit, paging, Unicode NFC, the privacy edge,
:class:`~schemas.raw.RawRecord` envelopes with deterministic ids, dead letters, the cursor saved
only after Kafka acknowledged the records). A whole connector for a JSON one-stop API::

    from typing import Any, ClassVar
    from connectors.sdk import Body, ConnectorConfig, Connector, CursorStream, Cursor, Page

    class AcmeConfig(ConnectorConfig):
        allowed_auth: ClassVar[tuple[str, ...]] = ("api_key",)
        start_from: str = "20000101000000"

    class Changes(CursorStream):
        name = "dossiers"                     # key of this stream's cursor in the state topic
        path = "/api/changes"                 # appended to the instance's base_url
        kind = "dossier"                      # RawRecord.kind
        topic = "raw_motcua"                  # a field of hub.config.TopicSettings
        primary_key = "MaHoSo"                # RawRecord.key
        version_key = "PhienBan"              # RawRecord.version; event_id = "<source>:<key>:<version>"

        def initial_cursor(self) -> Cursor:
            return {"since": self.connector.config.start_from, "after": ""}

        def request_params(self, cursor: Cursor) -> dict[str, Any]:
            return {"since": cursor["since"], "after": cursor["after"], "limit": self.page_size}

        def parse_page(self, body: Body, cursor: Cursor) -> Page:
            doc = body.json()
            if doc.get("error_code") != "0":      # HTTP 200 with an error: a failure, retried
                raise self.source_error(doc.get("message"))
            rows = doc["data"]
            last = {"since": rows[-1]["NgayCapNhat"], "after": rows[-1]["MaHoSo"]} if rows else None
            return Page(rows, checkpoint=last, has_more=bool(doc.get("con_nua")))

    class AcmeConnector(Connector):
        type = "acme"
        title = "ACME one-stop system"
        config_class = AcmeConfig
        streams = (Changes,)

Run it with the contract kit (:mod:`connectors.sdk.testing`) against a fake source, register it
under the ``dvc_hub.connectors`` entry-point group, and ``dvc-hub connectors run`` picks it up.

Three paging styles are built in: :class:`CursorStream` (keyset or id cursors, the next request
follows from the page), :class:`PageNumberStream` (offset paging, read in repeated passes until a
pass finds nothing new, because items that move while a client pages are otherwise skipped) and
:class:`SnapshotStream` (a small full table, such as a procedure catalogue, refreshed periodically).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Self

import httpx

from connectors.sdk.auth import Authenticator, build_authenticator
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.errors import BadPage, RecordError, SourceUnavailable
from connectors.sdk.fields import BY_KIND
from connectors.sdk.http import Body, SourceClient
from hub.config import ConnectorInstance
from hub.privacy import Fields
from schemas.raw import RecordKind

__all__ = [
    "ConfigClass",
    "Connector",
    "Cursor",
    "CursorStream",
    "Page",
    "PageNumberStream",
    "Reject",
    "SnapshotStream",
    "Stream",
    "StreamClass",
    "content_version",
    "nfc",
]

#: A cursor is a small JSON object, stored as it is in the state topic.
Cursor = dict[str, Any]


def nfc(value: Any) -> Any:
    """``value`` with every string (and dict key) in Unicode NFC, recursively.

    Some deployments send Vietnamese decomposed (NFD); two spellings of one text must produce one
    record, one hash and one event id, so the SDK normalises before anything else looks at a record.
    """
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {nfc(k): nfc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nfc(v) for v in value]
    return value


def content_version(record: dict[str, Any]) -> str:
    """A deterministic version for a record without one: a hash of its (NFC) content."""
    text = json.dumps(nfc(record), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return "h" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Reject:
    """Something a parser could not turn into a record; it becomes a dead letter."""

    reason: str
    detail: str
    raw: bytes | str | None = None
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class Page:
    """One answer of a source, parsed.

    ``checkpoint`` is the cursor to save once these records (and every earlier page's) are
    acknowledged by Kafka, or None when this page alone does not allow a safe save.
    """

    records: Sequence[dict[str, Any]]
    checkpoint: Cursor | None = None
    has_more: bool = False
    rejects: Sequence[Reject] = field(default_factory=tuple)


class Stream(ABC):
    """One kind of record of a source. Subclass :class:`CursorStream`, :class:`PageNumberStream`
    or :class:`SnapshotStream` rather than this class."""

    #: Key of this stream's cursor in the instance's state record.
    name: ClassVar[str]
    #: Path below the instance's ``base_url``.
    path: ClassVar[str]
    #: :data:`schemas.raw.RecordKind` of the records.
    kind: ClassVar[RecordKind]
    #: Field name of :class:`hub.config.TopicSettings` the records go to (``raw_motcua``...).
    topic: ClassVar[str]
    #: Field whose value is the record's key (Kafka key; a business code, never personal data).
    primary_key: ClassVar[str]
    #: Field whose value is the record's version; None = a hash of the record's content.
    version_key: ClassVar[str | None] = None
    #: The allow-list of the privacy edge: the only fields of a record the hub keeps (everything
    #: else is dropped, at every depth, however spelt). None: the list of the stream's ``kind``
    #: (:data:`connectors.sdk.fields.BY_KIND`), which knows the national field names.
    fields: ClassVar[Fields | None] = None
    #: More free-text fields to keep, masked (added to :attr:`fields` as ``TEXT``).
    free_text_fields: ClassVar[frozenset[str]] = frozenset()
    #: Fields never kept even if :attr:`fields` lists them (e.g. a signer this vendor puts in a kept object).
    drop_fields: ClassVar[frozenset[str]] = frozenset()
    #: Seconds between two reads; None = every poll cycle.
    refresh_interval_s: ClassVar[float | None] = None
    #: False for streams without a cursor (full snapshots).
    incremental: ClassVar[bool] = True

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._allowed: Fields | None = None

    def allowed_fields(self) -> Fields:
        """The effective allow-list: :attr:`fields` (or the kind's), this stream's ``free_text_fields``
        and ``drop_fields``, and the instance's ``options.keep_fields`` / ``options.free_text_fields``."""
        if self._allowed is None:
            base = self.fields if self.fields is not None else BY_KIND.get(self.kind, Fields())
            cfg = self.connector.config
            self._allowed = base.extend(keep=cfg.keep_fields, text=[*sorted(self.free_text_fields),
                                                                   *cfg.free_text_fields],
                                        drop=self.drop_fields)
        return self._allowed

    # ------------------------------------------------------------------ conveniences
    @property
    def page_size(self) -> int:
        """The instance's ``page_size``."""
        return self.connector.instance.page_size

    @property
    def client(self) -> SourceClient:
        """The connector's HTTP client."""
        return self.connector.client

    @staticmethod
    def source_error(message: object, *, retry_after: float | None = None) -> SourceUnavailable:
        """The error to raise for "HTTP 200 with an error in the body" (retried, never "no data")."""
        return SourceUnavailable(f"the source answered an error in the body: {message!s:.200}",
                                 reason="error_body", retry_after=retry_after)

    def refresh_every(self) -> float | None:
        """Seconds between two reads of this stream (:attr:`refresh_interval_s` unless configured)."""
        return self.refresh_interval_s

    # ------------------------------------------------------------------ cursor hooks
    def initial_cursor(self) -> Cursor | None:
        """Where a brand-new instance starts (None: the stream's own default)."""
        return None

    def merge_cursor(self, saved: Cursor | None, new: Cursor) -> Cursor:  # noqa: ARG002 - hook
        """The cursor to save after ``new`` was reached; override to keep it monotonic."""
        return new

    def cursor_time(self, cursor: Cursor | None) -> datetime | None:  # noqa: ARG002 - hook
        """The source time a cursor stands at (for the cursor-age metric), if it has one."""
        return None

    def proves_caught_up(self) -> bool:
        """Whether a clean cycle of this stream that found nothing new means "caught up".

        True by default; a stream whose cheap cycles skip part of the source (the one-stop
        forward-only cycles between look-back passes) says False for those.
        """
        return True

    def cycle_done(self, cursor: Cursor | None) -> Cursor | None:
        """The cursor to keep after a cycle read every page to the end without error.

        Override to record what a *complete* pass proves (the one-stop look-back anchor); the
        default keeps the cursor as the pages left it.
        """
        return cursor

    def parse_cursor(self, text: str) -> Cursor:
        """A cursor typed by an operator (``dvc-hub connectors reset --to``): JSON by default."""
        value = json.loads(text)
        if not isinstance(value, dict):
            raise TypeError("a cursor is a JSON object, e.g. '{\"id\": 1000}'")
        return value

    # ------------------------------------------------------------------ record hooks
    def record_key(self, record: dict[str, Any]) -> str:
        """The record's key: ``record[primary_key]``."""
        value = record.get(self.primary_key)
        if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
            raise RecordError("missing_key", f"record without a usable {self.primary_key}")
        return str(value).strip()

    def record_version(self, record: dict[str, Any]) -> str:
        """The record's version: ``record[version_key]``, or a content hash."""
        if self.version_key is None:
            return content_version(record)
        value = record.get(self.version_key)
        if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
            raise RecordError("schema", f"record without a usable {self.version_key}")
        return str(value).strip()

    def transform(self, record: dict[str, Any]) -> dict[str, Any]:
        """Last look at a record before the privacy edge (add context the URL implied, etc.)."""
        return record

    def identity(self, record: dict[str, Any]) -> str:
        """``key:version`` of a record, or a content hash when it has none (for de-duplication)."""
        try:
            return f"{self.record_key(record)}:{self.record_version(record)}"
        except RecordError:
            return content_version(record)

    # ------------------------------------------------------------------ reading
    async def fetch_page(
        self, params: dict[str, Any], parse: Callable[[Body], Page], *, max_attempts: int | None = None
    ) -> Page:
        """GET :attr:`path` with ``params`` and ``parse`` it, with the SDK's retries; records come back NFC."""
        page = await self.client.fetch(self.path, params=params, parse=parse, max_attempts=max_attempts)
        return Page([nfc(r) for r in page.records], page.checkpoint, page.has_more, page.rejects)

    @abstractmethod
    def pages(self, saved: Cursor | None) -> AsyncIterator[Page]:
        """The pages of one poll cycle, starting from the saved cursor."""

    @abstractmethod
    async def check(self) -> None:
        """One cheap real request (``dvc-hub connectors check``)."""


class CursorStream(Stream):
    """Keyset or id paging: each page tells where the next one starts.

    Override :meth:`request_params` and :meth:`parse_page`; :meth:`start_cursor` if a cycle must
    start before the saved cursor (a look-back window).
    """

    @abstractmethod
    def request_params(self, cursor: Cursor) -> dict[str, Any]:
        """Query parameters for the page after ``cursor``."""

    @abstractmethod
    def parse_page(self, body: Body, cursor: Cursor) -> Page:
        """Records of the page, the cursor after its last record, and whether more follow."""

    def _parse(self, cursor: Cursor, body: Body) -> Page:
        return self.parse_page(body, cursor)

    async def start_cursor(self, saved: Cursor | None) -> Cursor:
        """Where this cycle starts reading: the saved cursor, else :meth:`initial_cursor`."""
        start = saved if saved is not None else self.initial_cursor()
        if start is None:
            raise TypeError(f"{type(self).__name__} must define initial_cursor()")
        return start

    async def pages(self, saved: Cursor | None) -> AsyncIterator[Page]:
        """Follow the cursor until the source says there is no more."""
        cursor = await self.start_cursor(saved)
        while True:
            current = cursor
            page = await self.fetch_page(self.request_params(current), functools.partial(self._parse, current))
            yield page
            if not page.has_more:
                return
            if page.checkpoint is None or page.checkpoint == current:
                # A page that says "more" without moving the cursor would loop forever.
                raise BadPage("schema", f"the source said con_nua/has_more but the cursor did not move past {current}")
            cursor = page.checkpoint

    async def check(self) -> None:
        """Fetch the first page once (few retries)."""
        start = await self.start_cursor(None)
        await self.fetch_page(self.request_params(start), lambda b: self.parse_page(b, start), max_attempts=2)


class PageNumberStream(Stream):
    """Offset paging (``page=1,2,...``) made safe by repeated passes.

    An item that changes while a client pages moves to the end and shifts every later item one
    place earlier, so a single pass silently skips one item per move. Such a move is visible in
    the pass itself: the moved item is read twice, at its old place and (with a new version) at
    the end. A pass without such a double is complete — nothing shifted under it — and so is a
    pass that finds nothing the earlier passes did not. Each cycle reads the window from the same
    start, pass after pass, until one is complete; only then is a checkpoint offered
    (:meth:`next_cursor`). A cycle that does not settle within :attr:`max_passes` keeps the old
    cursor and the next cycle re-reads (nothing is lost, only work is repeated).
    """

    page_param: ClassVar[str] = "page"
    size_param: ClassVar[str] = "size"
    first_page: ClassVar[int] = 1
    max_passes: ClassVar[int] = 6

    @abstractmethod
    def request_params(self, cursor: Cursor) -> dict[str, Any]:
        """The window's query parameters (without the page number and size)."""

    @abstractmethod
    def parse_page(self, body: Body, cursor: Cursor) -> Page:
        """Records of one page and whether more pages follow (``checkpoint`` is ignored)."""

    @abstractmethod
    def next_cursor(self, start: Cursor, records: Sequence[dict[str, Any]]) -> Cursor:
        """The cursor after a settled cycle that read ``records`` (every record of every pass)."""

    async def start_cursor(self, saved: Cursor | None) -> Cursor:
        """Where this cycle's window starts: the saved cursor, else :meth:`initial_cursor`."""
        start = saved if saved is not None else self.initial_cursor()
        if start is None:
            raise TypeError(f"{type(self).__name__} must define initial_cursor()")
        return start

    async def _pass(self, start: Cursor) -> AsyncIterator[Page]:
        number = self.first_page
        while True:
            params = {**self.request_params(start), self.page_param: number, self.size_param: self.page_size}
            page = await self.fetch_page(params, lambda b: self.parse_page(b, start))
            yield page
            if not page.has_more or not page.records:
                return
            number += 1

    async def pages(self, saved: Cursor | None) -> AsyncIterator[Page]:
        """Passes over the window until one is clean; the last page carries the checkpoint."""
        start = await self.start_cursor(saved)
        seen: set[str] = set()
        everything: list[dict[str, Any]] = []
        for _ in range(self.max_passes):
            new_in_pass = 0
            versions_in_pass: dict[str, str] = {}
            moved = False
            async for page in self._pass(start):
                fresh = []
                for record in page.records:
                    ident = self.identity(record)
                    try:
                        key = self.record_key(record)
                    except RecordError:
                        key = ident
                    # The same key twice in one pass with two versions: it moved from a page already
                    # read to the end, and shifted one unread item onto a page already read.
                    moved |= versions_in_pass.setdefault(key, ident) != ident
                    if ident not in seen:
                        seen.add(ident)
                        fresh.append(record)
                new_in_pass += len(fresh)
                everything.extend(fresh)
                yield Page(fresh, None, True, page.rejects)
            if not moved or new_in_pass == 0:
                yield Page((), self.next_cursor(start, everything), False)
                return
        # Not settled (a busy source kept moving items): no checkpoint, the next cycle re-reads.

    async def check(self) -> None:
        """Fetch the first page once (few retries)."""
        start = await self.start_cursor(None)
        params = {**self.request_params(start), self.page_param: self.first_page, self.size_param: 1}
        await self.fetch_page(params, lambda b: self.parse_page(b, start), max_attempts=2)


class SnapshotStream(Stream):
    """A small table read whole (a procedure catalogue); unchanged rows cost nothing downstream
    because their version is a content hash the engine has already seen."""

    incremental: ClassVar[bool] = False
    refresh_interval_s: ClassVar[float | None] = 3600.0

    def request_params(self) -> dict[str, Any]:
        """Query parameters of the request (none by default)."""
        return {}

    @abstractmethod
    def parse_page(self, body: Body) -> Page:
        """Every row of the table."""

    async def pages(self, saved: Cursor | None) -> AsyncIterator[Page]:  # noqa: ARG002 - no cursor
        """One request, one page."""
        yield await self.fetch_page(self.request_params(), self.parse_page)

    async def check(self) -> None:
        """Fetch the table once (few retries)."""
        await self.fetch_page(self.request_params(), self.parse_page, max_attempts=2)


#: Aliases for annotations inside :class:`Connector` subclasses, where ``type`` is the type name.
StreamClass = type[Stream]
ConfigClass = type[ConnectorConfig]


class Connector:
    """A source system type: its name, config model and streams. See the module docstring."""

    #: The type name used in configuration and as the entry-point name.
    type: ClassVar[str]
    #: ``RawRecord.source`` and the event-id prefix; defaults to :attr:`type`.
    source: ClassVar[str] = ""
    #: One line for ``dvc-hub connectors list``.
    title: ClassVar[str] = ""
    config_class: ClassVar[ConfigClass] = ConnectorConfig
    streams: ClassVar[tuple[StreamClass, ...]] = ()

    def __init__(
        self,
        config: ConnectorConfig,
        http: httpx.AsyncClient,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.instance: ConnectorInstance = config.instance
        self.http = http
        self.client = SourceClient(
            self.instance.base_url,
            http,
            self.authenticator(),
            retry=self.instance.retry,
            rate_limit_per_s=self.instance.rate_limit_per_s,
            max_body_bytes=config.max_body_bytes,
            bad_page_attempts=config.bad_page_attempts,
            sleep=sleep,
            on_retry=on_retry,
        )
        self.stream_objects: list[Stream] = [cls(self) for cls in self.streams if self.stream_enabled(cls)]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__ and not cls.__dict__.get("source"):
            cls.source = cls.type

    @classmethod
    def from_instance(cls, instance: ConnectorInstance, http: httpx.AsyncClient, **kwargs: Any) -> Self:
        """Validate the instance's configuration and build the connector."""
        return cls(cls.config_class.from_instance(instance), http, **kwargs)

    def authenticator(self) -> Authenticator:
        """The authentication scheme; the configured ``auth`` block by default."""
        return build_authenticator(self.instance.auth, base_url=self.instance.base_url)

    def stream_enabled(self, stream: StreamClass) -> bool:  # noqa: ARG002 - hook
        """Whether this instance reads ``stream`` (all by default; options may switch some off)."""
        return True

    def stream(self, name: str) -> Stream:
        """The stream called ``name``."""
        for s in self.stream_objects:
            if s.name == name:
                return s
        raise KeyError(f"{self.type} has no stream {name!r}; streams: {[s.name for s in self.stream_objects]}")

    async def source_now(self) -> datetime | None:
        """The source's clock, when it publishes one (the cursor-age metric uses it)."""
        return None

    async def check(self) -> None:
        """Connect for real: the first stream's :meth:`Stream.check`. Raises a ConnectorError."""
        await self.stream_objects[0].check()
