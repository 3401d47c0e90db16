"""One-stop systems: dossier changes by keyset with a look-back window, and the procedure catalogue.

``GET {base}/api/v1/hoso/thaydoi?tu=&sau=&gioihan=`` serves full snapshots ordered by
(``NgayCapNhat``, ``MaHoSo``). The cursor is that pair of the last record delivered. Two traps
decide the design:

- many dossiers share a second, so the cursor carries the ``sau`` tie-breaker (strictly after) for
  the pages of one cycle; each cycle, though, starts at the whole second of its cursor, because a
  dossier changed later in that second can sort before the cursor's ``MaHoSo``;
- a change can become visible up to 120 s *after* its ``NgayCapNhat``. A look-back cycle (the first
  after a start, then every ``lookback_every_s``) therefore asks the source for its own clock
  (``/api/v1/health``, never the hub's clock: they can be skewed) and starts reading at
  ``min(cursor, polled_at - lookback_s)``, where ``polled_at`` is the source time at the start of the
  last *complete* look-back pass (so a connector that was down for an hour still re-reads what
  committed late just before it stopped). Cycles in between only read forward from the cursor: on a
  busy source re-reading two minutes of changes every poll would cost more than the changes. The
  re-read window costs no Kafka writes: the engine's seen-set drops versions already delivered;
  after a restart they are delivered again with identical event ids (``motcua:<MaHoSo>:<PhienBan>``),
  which is allowed.

The saved cursor only moves forward (:meth:`Dossiers.merge_cursor`). A version superseded before
any poll could see it is legitimately never read: the source serves snapshots, and the snapshot is
the truth.

The catalogue (``/api/v1/thutuc``) is read at start and hourly; each row becomes a ``catalogue``
record keyed ``<unit>|<MaTTHC>`` whose version is a hash of the row, so a row is re-delivered only
when it changes (a level going from 3 to 4, a validity bound set).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from connectors.motcua.config import MotCuaConfig
from connectors.sdk import (
    BadPage,
    Body,
    Connector,
    Cursor,
    CursorStream,
    Fields,
    InvalidAuth,
    Page,
    SnapshotStream,
    SourceRejected,
    Stream,
    StreamClass,
)
from connectors.sdk.fields import CATALOGUE, DOSSIER

__all__ = ["Dossiers", "MotCuaConnector", "Procedures"]

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
_FMT = "%Y%m%d%H%M%S"


def parse_compact(text: str) -> datetime:
    """``yyyyMMddHHmmss`` local time; ValueError otherwise."""
    if len(text) != 14 or not text.isdigit():
        raise ValueError(f"expected yyyyMMddHHmmss, got {text!r}")
    return datetime.strptime(text, _FMT).replace(tzinfo=TZ)


def fmt_compact(dt: datetime) -> str:
    """``yyyyMMddHHmmss`` in local Vietnamese time."""
    return dt.astimezone(TZ).strftime(_FMT)


def _envelope(body: Body, max_depth: int) -> dict[str, Any]:
    """The one-stop JSON envelope, with "HTTP 200 + error_code" turned into a retryable failure."""
    doc = body.json(max_depth=max_depth + 2)
    if not isinstance(doc, dict):
        raise BadPage("schema", f"expected a JSON object, got {type(doc).__name__}", raw=body.content)
    code = str(doc.get("error_code", "")).strip()
    if code == "401":
        raise InvalidAuth("the one-stop system refused the API key (error_code 401); check the instance's api_key")
    if code != "0":
        raise Stream.source_error(f"error_code {code!r}: {doc.get('message', '')}")
    return doc


class Dossiers(CursorStream):
    """Dossier snapshots, by (NgayCapNhat, MaHoSo) keyset, re-reading a look-back window."""

    #: Source time at the start of this cycle when it re-read the look-back window, else "".
    _cycle_started: str = ""
    #: time.monotonic() of the last look-back pass (-inf: the first cycle always looks back).
    _last_lookback: float = float("-inf")

    name = "dossiers"
    path = "/api/v1/hoso/thaydoi"
    kind = "dossier"
    topic = "raw_motcua"
    primary_key = "MaHoSo"
    version_key = "PhienBan"
    #: The national dossier fields, nothing else (ChuHoSo, phones, addresses and every other
    #: person field are dropped, SoGiayToChuHoSo becomes IdHash, notes are masked free text).
    fields: ClassVar[Fields] = DOSSIER

    @property
    def cfg(self) -> MotCuaConfig:
        """This instance's typed configuration."""
        assert isinstance(self.connector.config, MotCuaConfig)
        return self.connector.config

    def initial_cursor(self) -> Cursor:
        """A new instance reads everything changed since ``start_from``."""
        return {"tu": self.cfg.start_from, "sau": ""}

    async def start_cursor(self, saved: Cursor | None) -> Cursor:
        """Where this cycle reads from, on the source's clock.

        The cursor remembers the source time of the poll that last moved it (``polled_at``): at
        that moment every change stamped up to ``polled_at - 120 s`` was visible and has been read
        up to the cursor. So the cycle starts at ``min(cursor, polled_at - lookback)``: a change
        that was still invisible then is found however long the connector was down since.
        """
        cursor = saved if saved is not None else self.initial_cursor()
        assert isinstance(self.connector, MotCuaConnector)
        self._cycle_started = ""
        due = time.monotonic() - self._last_lookback >= self.cfg.lookback_every_s
        if saved is not None and saved.get("polled_at") and not due:
            # Forward only: cheap, and it proves nothing about late changes, so the anchor stays.
            # It starts at the cursor's *second*, not after its MaHoSo: a dossier changed later in
            # that same second may sort before the cursor's MaHoSo (the stamp has one-second
            # resolution), and read strictly after the cursor it would wait for the next look-back
            # pass (up to lookback_every_s). The seen-set drops the re-read ones without a Kafka write.
            return {"tu": cursor["tu"], "sau": "", "polled_at": cursor["polled_at"]}
        now = await self.connector.fetch_source_now()
        anchor = parse_compact(cursor.get("polled_at") or cursor["tu"])
        floor = fmt_compact(min(anchor, now) - timedelta(seconds=self.connector.instance.lookback_s))
        start = {"tu": min(floor, cursor["tu"]), "sau": ""}
        self._cycle_started = fmt_compact(now)
        self._last_lookback = time.monotonic()
        return {**start, "polled_at": self._cycle_started}

    def proves_caught_up(self) -> bool:
        """Only a look-back pass: a forward-only cycle cannot see changes that committed late."""
        return bool(self._cycle_started)

    def cycle_done(self, cursor: Cursor | None) -> Cursor | None:
        """A complete pass that started at source time S has read every change stamped up to
        ``S - 120 s`` (all were visible at S), so S becomes the look-back anchor even when the cursor
        did not move. Without this, a cursor last moved early in a long first pass kept an old
        anchor and every later cycle re-read months of history."""
        started = self._cycle_started
        if cursor is None or not started or started <= cursor.get("polled_at", ""):
            return cursor
        return {**cursor, "polled_at": started}

    def merge_cursor(self, saved: Cursor | None, new: Cursor) -> Cursor:
        """Only forward: a look-back re-read that has not yet passed the saved position changes nothing
        (not even ``polled_at``, which is only true of positions this cycle has read through)."""
        if saved is None:
            return new
        return new if (new["tu"], new["sau"]) > (saved["tu"], saved["sau"]) else saved

    def cursor_time(self, cursor: Cursor | None) -> datetime | None:
        """The cursor's NgayCapNhat."""
        return parse_compact(cursor["tu"]) if cursor else None

    def parse_cursor(self, text: str) -> Cursor:
        """``yyyyMMddHHmmss`` or ``yyyyMMddHHmmss,MaHoSo`` (or the JSON form)."""
        if text.lstrip().startswith("{"):
            return super().parse_cursor(text)
        tu, _, sau = text.partition(",")
        parse_compact(tu.strip())
        return {"tu": tu.strip(), "sau": sau.strip()}

    def request_params(self, cursor: Cursor) -> dict[str, Any]:
        """``tu``, ``sau`` (only when set: without it the source reads ``>= tu``) and ``gioihan``."""
        params: dict[str, Any] = {"tu": cursor["tu"], "gioihan": min(self.page_size, 1000)}
        if cursor.get("sau"):
            params["sau"] = cursor["sau"]
        return params

    def parse_page(self, body: Body, cursor: Cursor) -> Page:
        """Snapshots, the (NgayCapNhat, MaHoSo) of the last usable one, and ``con_nua``."""
        doc = _envelope(body, self.cfg.max_depth)
        data = doc.get("data")
        if data is None:
            data = []
        if not isinstance(data, list):
            raise BadPage("schema", f"data is a {type(data).__name__}, not a list", raw=body.content)
        last: tuple[str, str] | None = None
        for item in data:
            if isinstance(item, dict):
                stamp, code = item.get("NgayCapNhat"), item.get("MaHoSo")
                if isinstance(stamp, str) and len(stamp) == 14 and stamp.isdigit() and isinstance(code, str) and code:
                    last = (stamp, code)
        checkpoint = {"tu": last[0], "sau": last[1], "polled_at": cursor.get("polled_at", "")} if last else None
        more = doc.get("con_nua") in (True, "true", "True", 1)
        return Page(data, checkpoint=checkpoint, has_more=more and checkpoint is not None)


class Procedures(SnapshotStream):
    """The unit's procedure catalogue, keyed ``<unit>|<MaTTHC>``, versioned by content."""

    name = "catalogue"
    path = "/api/v1/thutuc"
    kind = "catalogue"
    topic = "raw_catalogue"
    primary_key = "MaTTHC"
    fields: ClassVar[Fields] = CATALOGUE

    @property
    def unit(self) -> str:
        """The instance's unit code."""
        return self.connector.instance.unit_code or ""

    def refresh_every(self) -> float | None:
        """``catalogue_refresh_s``."""
        cfg = self.connector.config
        return cfg.catalogue_refresh_s if isinstance(cfg, MotCuaConfig) else self.refresh_interval_s

    def record_key(self, record: dict[str, Any]) -> str:
        """``<unit>|<MaTTHC>``."""
        return f"{self.unit}|{super().record_key(record)}"

    def transform(self, record: dict[str, Any]) -> dict[str, Any]:
        """Rows do not repeat the unit; the URL said it, the payload records it."""
        return record if record.get("MaDonVi") else {**record, "MaDonVi": self.unit}

    def parse_page(self, body: Body) -> Page:
        """Every row."""
        doc = _envelope(body, self.connector.config.max_depth)
        data = doc.get("data") or []
        if not isinstance(data, list):
            raise BadPage("schema", f"data is a {type(data).__name__}, not a list", raw=body.content)
        return Page(data)


class MotCuaConnector(Connector):
    """An electronic one-stop system of one unit."""

    type = "motcua"
    title = "Electronic one-stop system of a unit (hệ thống một cửa điện tử)"
    config_class = MotCuaConfig
    streams = (Dossiers, Procedures)

    source_clock: datetime | None = None

    def stream_enabled(self, stream: StreamClass) -> bool:
        """The catalogue can be switched off with ``options.catalogue = false``."""
        cfg = self.config
        return not (stream is Procedures and isinstance(cfg, MotCuaConfig) and not cfg.catalogue)

    async def fetch_source_now(self, *, max_attempts: int | None = None) -> datetime:
        """``GET /api/v1/health``: the source's clock (and a check that this is the right unit)."""

        def parse(body: Body) -> tuple[datetime, str]:
            doc = _envelope(body, self.config.max_depth)
            try:
                return parse_compact(str(doc.get("thoi_gian_may_chu", ""))), str(doc.get("ma_don_vi", ""))
            except ValueError:
                raise BadPage("schema", "health answer without a valid thoi_gian_may_chu", raw=body.content) from None

        now, unit = await self.client.fetch("/api/v1/health", parse=parse, max_attempts=max_attempts)
        if unit and self.instance.unit_code and unit != self.instance.unit_code:
            raise SourceRejected(
                f"{self.instance.base_url} serves unit {unit}, but instance {self.instance.name} has unit_code "
                f"{self.instance.unit_code}; fix base_url or unit_code", status=404,
            )
        self.source_clock = now
        return now

    async def source_now(self) -> datetime | None:
        """The source clock as of the last health call."""
        return self.source_clock

    async def check(self) -> None:
        """Health (key, unit, clock), then one page of changes."""
        await self.fetch_source_now(max_attempts=2)
        await super().check()
