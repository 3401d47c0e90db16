"""Provincial portal, source side: online submissions, payments and ratings, and catalogues.

``GET {base}/api/v1/hoso-truc-tuyen?tu=<ISO>&trang=&kich_thuoc=`` is **paged by page number**
and an item that changes while a client pages moves to the end, shifting later items one place
earlier: a single pass silently skips them. The stream is a
:class:`~connectors.sdk.PageNumberStream`: each cycle reads its window in passes until a pass finds
nothing new (items only move forward, so such a pass saw everything), and only then moves the
cursor to the largest ``cap_nhat_luc`` read. The window starts ``lookback_s`` before the cursor
(inclusive ``tu``), so items stamped in the same second as the cursor, or committed slightly out of
order, are read again and dropped by event id.

Replies use the LGSP envelope ``{"code": 200, "status": "OK", "response": {...}}``: a ``code``
other than 200 (or an ``error_code`` other than ``"0"``) inside an HTTP 200 is a failure and is
retried, never "no data"; a 401 in either place renews the OAuth2 token once.

Identity: ``key`` = ``ma_ho_so``, ``version`` = ``cap_nhat_luc`` normalised to
``YYYY-MM-DDTHH:MM:SS+07:00``, so ``event_id = "portal:<ma_ho_so>:<cap_nhat_luc>"``.
Catalogue rows (``/api/v1/thutuc?ma_don_vi=`` for each of ``catalogue_units``) are keyed
``<unit>|<MaTTHC>`` and versioned by content hash.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from connectors.portal.config import PortalConfig
from connectors.sdk import (
    BadPage,
    Body,
    Connector,
    Cursor,
    Fields,
    InvalidAuth,
    Page,
    PageNumberStream,
    RecordError,
    SnapshotStream,
    Stream,
    StreamClass,
)
from connectors.sdk.fields import CATALOGUE, PORTAL_SUBMISSION

__all__ = ["OnlineSubmissions", "PortalCatalogue", "PortalConnector", "lgsp_response"]

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def _iso(dt: datetime) -> str:
    return dt.astimezone(TZ).isoformat(timespec="seconds")


def lgsp_response(body: Body, max_depth: int) -> Any:
    """The ``response`` of an LGSP envelope; errors in a 200 become retryable failures."""
    doc = body.json(max_depth=max_depth + 3)
    if not isinstance(doc, dict):
        raise BadPage("schema", f"expected the LGSP envelope object, got {type(doc).__name__}", raw=body.content)
    if "error_code" in doc and str(doc["error_code"]).strip() != "0":
        if str(doc["error_code"]).strip() == "401":
            raise InvalidAuth("the portal refused the token (error_code 401)")
        raise Stream.source_error(f"error_code {doc['error_code']!r}: {doc.get('message', '')}")
    code = doc.get("code")
    if code is not None and str(code).strip() != "200":
        if str(code).strip() == "401":
            raise InvalidAuth("the LGSP gateway refused the token (code 401)")
        raise Stream.source_error(f"LGSP code {code!r}: {doc.get('status', '')} {doc.get('message', '')}")
    if "response" not in doc:
        raise BadPage("schema", "LGSP envelope without a response", raw=body.content)
    return doc["response"]


class OnlineSubmissions(PageNumberStream):
    """Online submissions, payments and ratings by ``cap_nhat_luc``, in settled passes."""

    name = "submissions"
    path = "/api/v1/hoso-truc-tuyen"
    kind = "portal"
    topic = "raw_portal"
    primary_key = "ma_ho_so"
    version_key = "cap_nhat_luc"
    page_param = "trang"
    size_param = "kich_thuoc"
    #: Codes, times, the payment and the rating's verdict: never the citizen's name, contact or comment.
    fields: ClassVar[Fields] = PORTAL_SUBMISSION

    def initial_cursor(self) -> Cursor:
        """``start_from``."""
        cfg = self.connector.config
        return {"tu": cfg.start_from if isinstance(cfg, PortalConfig) else "2000-01-01T00:00:00+07:00"}

    async def start_cursor(self, saved: Cursor | None) -> Cursor:
        """The window opens ``lookback_s`` before the saved cursor."""
        if saved is None:
            return self.initial_cursor()
        start = datetime.fromisoformat(saved["tu"]) - timedelta(seconds=self.connector.instance.lookback_s)
        return {"tu": _iso(start)}

    def merge_cursor(self, saved: Cursor | None, new: Cursor) -> Cursor:
        """Only forward."""
        if saved is None:
            return new
        later = datetime.fromisoformat(new["tu"]) > datetime.fromisoformat(saved["tu"])
        return new if later else saved

    def cursor_time(self, cursor: Cursor | None) -> datetime | None:
        """The cursor's ``cap_nhat_luc``."""
        return datetime.fromisoformat(cursor["tu"]) if cursor else None

    def parse_cursor(self, text: str) -> Cursor:
        """An ISO-8601 time with offset (or the JSON form)."""
        if text.lstrip().startswith("{"):
            return super().parse_cursor(text)
        if datetime.fromisoformat(text.strip()).tzinfo is None:
            raise ValueError("the cursor needs an offset, e.g. 2021-01-15T00:00:00+07:00")
        return {"tu": text.strip()}

    def record_version(self, record: dict[str, Any]) -> str:
        """``cap_nhat_luc``, normalised (one instant, one spelling, one event id)."""
        raw = super().record_version(record)
        try:
            stamp = datetime.fromisoformat(raw)
        except ValueError:
            raise RecordError("schema", "cap_nhat_luc is not an ISO-8601 time") from None
        if stamp.tzinfo is None:
            raise RecordError("schema", "cap_nhat_luc has no offset")
        return _iso(stamp)

    def request_params(self, cursor: Cursor) -> dict[str, Any]:
        """``tu`` (inclusive)."""
        return {"tu": cursor["tu"]}

    def parse_page(self, body: Body, cursor: Cursor) -> Page:  # noqa: ARG002 - hook signature
        """``du_lieu``; more pages while ``trang * kich_thuoc < tong_so``."""
        response = lgsp_response(body, self.connector.config.max_depth)
        if not isinstance(response, dict):
            raise BadPage("schema", "response is not an object", raw=body.content)
        items = response.get("du_lieu") or []
        if not isinstance(items, list):
            raise BadPage("schema", "du_lieu is not a list", raw=body.content)
        size = min(self.page_size, 200)
        total, number = response.get("tong_so"), response.get("trang")
        # Without tong_so, a full page is the only hint that another one may follow.
        more = number * size < total if isinstance(total, int) and isinstance(number, int) else len(items) >= size
        return Page(items, has_more=more and bool(items))

    def next_cursor(self, start: Cursor, records: Sequence[dict[str, Any]]) -> Cursor:
        """The largest ``cap_nhat_luc`` read (or the window's start when nothing was read)."""
        latest = datetime.fromisoformat(start["tu"])
        for record in records:
            try:
                latest = max(latest, datetime.fromisoformat(self.record_version(record)))
            except (RecordError, ValueError):
                continue
        return {"tu": _iso(latest)}

    @property
    def page_size(self) -> int:
        """``kich_thuoc`` is at most 200."""
        return min(self.connector.instance.page_size, 200)


class PortalCatalogue(SnapshotStream):
    """The published procedure catalogue of each configured unit."""

    name = "catalogue"
    path = "/api/v1/thutuc"
    kind = "catalogue"
    topic = "raw_catalogue"
    primary_key = "MaTTHC"
    fields: ClassVar[Fields] = CATALOGUE

    @property
    def units(self) -> list[str]:
        """``catalogue_units``."""
        cfg = self.connector.config
        return list(cfg.catalogue_units) if isinstance(cfg, PortalConfig) else []

    def refresh_every(self) -> float | None:
        """``catalogue_refresh_s``."""
        cfg = self.connector.config
        return cfg.catalogue_refresh_s if isinstance(cfg, PortalConfig) else self.refresh_interval_s

    def record_key(self, record: dict[str, Any]) -> str:
        """``<unit>|<MaTTHC>``."""
        return f"{record.get('MaDonVi') or record.get('ma_don_vi') or ''}|{super().record_key(record)}"

    def parse_page(self, body: Body) -> Page:
        """Rows of one unit (``du_lieu``, ``data`` or a bare list in ``response``)."""
        response = lgsp_response(body, self.connector.config.max_depth)
        rows = response.get("du_lieu", response.get("data")) if isinstance(response, dict) else response
        if rows is None:
            rows = []
        if not isinstance(rows, list):
            raise BadPage("schema", "catalogue rows are not a list", raw=body.content)
        return Page(rows)

    async def pages(self, saved: Cursor | None) -> AsyncIterator[Page]:  # noqa: ARG002 - no cursor
        """One request per unit; rows get the unit they were asked for."""
        for unit in self.units:
            page = await self.fetch_page({"ma_don_vi": unit}, self.parse_page)
            rows = [r if not isinstance(r, dict) or r.get("MaDonVi") else {**r, "MaDonVi": unit}
                    for r in page.records]
            yield Page(rows, rejects=page.rejects)

    async def check(self) -> None:
        """Nothing to check without units (the submissions stream checks the connection)."""


class PortalConnector(Connector):
    """The provincial public service portal (source side)."""

    type = "portal"
    title = "Provincial public service portal, source side (Cổng dịch vụ công tỉnh)"
    config_class = PortalConfig
    streams = (OnlineSubmissions, PortalCatalogue)

    def stream_enabled(self, stream: StreamClass) -> bool:
        """The catalogue only when ``catalogue_units`` lists units."""
        cfg = self.config
        return not (stream is PortalCatalogue and isinstance(cfg, PortalConfig) and not cfg.catalogue_units)
