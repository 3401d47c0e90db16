"""QLVB: document events as XML, read by id, parsed safely.

``GET {base}/qlvb/api/sukien?tu_id=<n>&so_luong=<1..500>`` answers the events with ``id > tu_id``.

- **Safe XML**: parsed with :mod:`defusedxml`, incrementally — DTDs, entity declarations (billion
  laughs) and external entities are refused (``hostile_xml``), a truncated body is ``invalid_xml``,
  nesting deeper than ``max_depth`` is ``too_deep`` (a deep tree is never built, nor walked
  recursively). Either way
  the page is fetched again (hostile answers are intermittent) and, if it stays unreadable, it is
  dead-lettered and the stream holds (see :mod:`connectors.sdk.engine`). Nothing crashes.
- **Gaps** in the id sequence (rolled-back transactions) need nothing: the query is "after this
  id", so a missing number is simply never served.
- **Duplicates** (an event served again at the start of the next page) are dropped when their id is
  not above the cursor, and by event id in any case.

Identity, deterministic: ``key`` = the linked dossier's ``ma_ho_so`` when ``HoSoLienQuan`` is
present (so a dossier's documents share its Kafka partition), else ``doc-<id>``; ``version`` = the
event id, so ``event_id = "qlvb:<key>:<id>"``. An event never changes, so it has one id forever.

Privacy: the allow-list :data:`connectors.sdk.fields.DOCUMENT_EVENT` keeps the codes only; the
signer's and drafter's names (``nguoi_ky``, ``nguoi_soan``, any spelling) and any other attribute
are dropped; the abstract (``trich_yeu``) is masked free text (:func:`hub.privacy.redact_text`).
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any, ClassVar
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import quoteattr

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from connectors.qlvb.config import QlvbConfig
from connectors.sdk import BadPage, Body, Connector, Cursor, CursorStream, Fields, Page, Reject
from connectors.sdk.fields import DOCUMENT_EVENT
from connectors.sdk.http import DEFAULT_MAX_DEPTH
from hub.privacy import field_key

__all__ = ["DocumentEvents", "QlvbConnector", "parse_events"]


def _excerpt(element: Element) -> str:
    """The element's start tag with its attributes (never its subtree: serialising a deeply nested
    subtree recursed past Python's limit)."""
    attrs = " ".join(f"{k}={quoteattr(v)}" for k, v in list(element.attrib.items())[:30])
    return f"<{element.tag} {attrs}>"[:600]


def _child(element: Element, name: str) -> Element | None:
    """The first child called ``name`` in any spelling (``VanBan``, ``vanBan``, ``van_ban``)."""
    want = field_key(name)
    for child in element:
        if isinstance(child.tag, str) and field_key(child.tag) == want:
            return child
    return None


def _parse_xml(content: bytes, max_depth: int) -> Element:
    """The document's root, parsed safely and incrementally: DTDs, entities and external references
    refused (``hostile_xml``), a broken body ``invalid_xml``, and nesting deeper than ``max_depth``
    ``too_deep`` as soon as it is met (before a deep tree is built)."""
    depth = 0
    root: Element | None = None
    try:
        for event, element in iterparse(io.BytesIO(content), events=("start", "end"), forbid_dtd=True,
                                        forbid_entities=True, forbid_external=True):
            if event == "start":
                depth += 1
                root = element if root is None else root
                if depth > max_depth:
                    raise BadPage("too_deep", f"XML nested deeper than {max_depth} levels", raw=content)
            else:
                depth -= 1
    except DefusedXmlException as exc:
        raise BadPage("hostile_xml", f"refused {type(exc).__name__} (DTDs and entities are not accepted)",
                      raw=content) from None
    except ParseError as exc:
        raise BadPage("invalid_xml", f"not well-formed XML (truncated?): line {exc.position[0]}",
                      raw=content) from None
    if root is None:
        raise BadPage("invalid_xml", "an empty XML document", raw=content)
    return root


def parse_events(content: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[list[dict[str, Any]], list[Reject], bool]:
    """Events, rejected elements and ``con_nua`` of one answer; :class:`BadPage` if unreadable."""
    root = _parse_xml(content, max_depth)
    if field_key(str(root.tag)) != "danhsachsukien":
        raise BadPage("schema", f"expected <DanhSachSuKien>, got <{str(root.tag)[:40]}>", raw=content)
    events: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for element in root:
        if not isinstance(element.tag, str) or field_key(element.tag) != "sukien":
            continue
        raw_id = element.get("id", "")
        if not raw_id.isdigit():
            rejects.append(Reject("schema", f"SuKien without a numeric id ({raw_id[:20]!r})", raw=_excerpt(element)))
            continue
        van_ban = _child(element, "VanBan")
        link = _child(element, "HoSoLienQuan")
        # Every attribute is passed on; the allow-list (connectors.sdk.fields.DOCUMENT_EVENT)
        # keeps the codes and the masked abstract, never the signer, drafter or any other person.
        events.append({
            "id": int(raw_id),
            "loai": element.get("loai", ""),
            "thoi_diem": element.get("thoi_diem", ""),
            "VanBan": dict(van_ban.attrib) if van_ban is not None else {},
            "HoSoLienQuan": dict(link.attrib) if link is not None else None,
        })
    more = root.get("con_nua", "false").strip().lower() == "true"
    return events, rejects, more


class DocumentEvents(CursorStream):
    """Document events by id."""

    name = "events"
    path = "/qlvb/api/sukien"
    kind = "document"
    topic = "raw_qlvb"
    primary_key = "id"
    version_key = "id"
    fields: ClassVar[Fields] = DOCUMENT_EVENT

    def initial_cursor(self) -> Cursor:
        """``start_id`` (0: from the first event)."""
        cfg = self.connector.config
        return {"id": cfg.start_id if isinstance(cfg, QlvbConfig) else 0}

    def merge_cursor(self, saved: Cursor | None, new: Cursor) -> Cursor:
        """Only forward."""
        return new if saved is None or int(new["id"]) > int(saved["id"]) else saved

    def cursor_time(self, cursor: Cursor | None) -> datetime | None:
        """When the cursor's event happened."""
        if not cursor or not cursor.get("thoi_diem"):
            return None
        try:
            return datetime.fromisoformat(str(cursor["thoi_diem"]))
        except ValueError:
            return None

    def parse_cursor(self, text: str) -> Cursor:
        """An event id (or the JSON form)."""
        if text.strip().isdigit():
            return {"id": int(text.strip())}
        return super().parse_cursor(text)

    def record_key(self, record: dict[str, Any]) -> str:
        """The linked dossier's code, else ``doc-<id>``."""
        link = record.get("HoSoLienQuan")
        if isinstance(link, dict) and str(link.get("ma_ho_so", "")).strip():
            return str(link["ma_ho_so"]).strip()
        return f"doc-{record['id']}"

    def request_params(self, cursor: Cursor) -> dict[str, Any]:
        """``tu_id`` and ``so_luong``."""
        return {"tu_id": int(cursor["id"]), "so_luong": min(self.page_size, 500)}

    def parse_page(self, body: Body, cursor: Cursor) -> Page:
        """Events above the cursor; the checkpoint is the largest id (with its time)."""
        events, rejects, more = parse_events(body.content, self.connector.config.max_depth)
        after = int(cursor["id"])
        fresh = [e for e in events if e["id"] > after]
        if not fresh:
            return Page((), checkpoint=None, has_more=False, rejects=rejects)
        last = max(fresh, key=lambda e: e["id"])
        return Page(fresh, checkpoint={"id": last["id"], "thoi_diem": last["thoi_diem"]}, has_more=more,
                    rejects=rejects)


class QlvbConnector(Connector):
    """The document management system."""

    type = "qlvb"
    title = "Document management software (phần mềm quản lý văn bản, QLVB)"
    config_class = QlvbConfig
    streams = (DocumentEvents,)
