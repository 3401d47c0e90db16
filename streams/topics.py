"""Every Kafka topic and table the stream worker touches, declared in one place.

Names come from :class:`hub.config.TopicSettings`, so a deployment renames a topic in its TOML
and nowhere else. Every topic carries raw bytes (``value_serializer="raw"``): the agents
(de)serialise with pydantic themselves, so a malformed record is a per-event validation error
that ends in the dead-letter topic, never a codec exception inside faust that would skip the
message (faust issues #604, #527).

Topology::

    raw_motcua ─┐
    raw_qlvb ───┤ normalize_<source>  ──► canonical (key = MaHoSo, or unit code for catalogue)
    raw_portal ─┤        │                    │
    raw_catalogue┘       └─► dead_letter      ▼
                                         dossier_state ──► table "dossiers"  (changelog, compacted)
                                              │        ──► table "catalogue" (changelog, compacted)
                                              └──────────► outbox (key = MaHoSo)
                         partials timer ─────────────────► partials (key = "<partition>|<unit>", compacted)

Example::

    >>> from hub.config import Settings
    >>> changelog_topic(Settings(), DOSSIER_TABLE)
    'dvc-hub-dossiers-changelog'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from pydantic import BaseModel, TypeAdapter

from hub.config import Settings
from hub.kafka import CATALOGUE_TABLE, DOSSIER_TABLE, changelog_topic_name
from schemas.events import CanonicalEvent

__all__ = [
    "CATALOGUE_TABLE",
    "DOSSIER_TABLE",
    "RAW_SOURCES",
    "HubTopics",
    "changelog_topic",
    "declare_tables",
    "declare_topics",
    "decode_canonical",
    "encode_canonical",
]

# DOSSIER_TABLE: dossier state, key ``MaHoSo`` -> ``{"p": partition, "s": state}`` (JSON).
# CATALOGUE_TABLE: the procedure catalogue, key ``partition|unit|procedure|valid_from`` -> ``{"p": .., "e": entry}``.
# Both names live in hub.kafka, which creates their changelog topics before the worker starts.

#: Source name (RawRecord.source, agent suffix) -> attribute of TopicSettings.
RAW_SOURCES: dict[str, str] = {
    "motcua": "raw_motcua",
    "qlvb": "raw_qlvb",
    "portal": "raw_portal",
    "catalogue": "raw_catalogue",
}


_CANONICAL: TypeAdapter[Any] = TypeAdapter(CanonicalEvent)


def encode_canonical(event: BaseModel) -> bytes:
    """JSON of a canonical event for the canonical topic.

    Computed fields (``status_group``, ``is_electronic_result``) are left out: the models forbid
    extra input, so a dump that carried them could not be read back.
    """
    return event.model_dump_json(exclude=set(type(event).model_computed_fields)).encode()


def decode_canonical(value: bytes) -> Any:
    """A canonical event from the canonical topic (validated; raises ``pydantic.ValidationError``)."""
    return _CANONICAL.validate_json(value)


def changelog_topic(settings: Settings, table: str) -> str:
    """Name faust gives a table's changelog topic (``<app id>-<table>-changelog``).

    ``dvc-hub report`` reads the catalogue table's changelog directly: it is compacted, so reading
    it to its end gives the latest value of every key whichever worker wrote it. The topic is
    created by :func:`hub.kafka.hub_topics` / ``ensure_topics`` before the worker starts.
    """
    return changelog_topic_name(settings, table)


@dataclass(frozen=True)
class HubTopics:
    """The faust topic objects of one app (all raw bytes in and out)."""

    raw: dict[str, Any]  # source name -> faust.TopicT
    canonical: Any
    dead_letter: Any
    partials: Any
    outbox: Any
    requests: Any

    def source_topic_names(self) -> list[str]:
        """Topics the worker consumes (consumer lag is measured on these)."""
        return [*(t.get_topic_name() for t in self.raw.values()), self.canonical.get_topic_name()]


def declare_topics(app: faust.App, settings: Settings) -> HubTopics:
    """Declare the hub's topics on ``app``.

    The topics themselves are created (with their partitions and retention) by
    :func:`hub.kafka.ensure_topics` before the worker starts, the tables' changelogs and faust's
    leader topic included, and checked by ``dvc-hub worker``: faust's own declaration of its
    internal topics finds them in place. ``internal=False`` keeps faust from trying to re-create
    or reconfigure these.
    """
    t = settings.topics
    parts = settings.kafka.partitions

    def topic(name: str, partitions: int | None = parts) -> Any:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
            partitions=partitions, internal=False,
        )

    return HubTopics(
        raw={source: topic(getattr(t, attr)) for source, attr in RAW_SOURCES.items()},
        canonical=topic(t.canonical),
        dead_letter=topic(t.dead_letter, 1),
        partials=topic(t.partials, 1),
        outbox=topic(t.outbox),
        requests=topic(t.requests, 1),
    )


def declare_tables(app: faust.App, settings: Settings) -> tuple[Any, Any]:
    """The two tables, co-partitioned with the canonical topic (same partition count).

    Keys and values are raw bytes (faust picks the ``raw`` codec from ``bytes`` types, for the
    changelog too; a ``Schema`` alone would leave the changelog on JSON). Values are JSON; the
    partition number is stored inside each value, because the memory store keeps standby and
    formerly owned partitions in the same dict and the derived aggregates must be rebuilt per
    *active* partition.
    """
    parts = settings.kafka.partitions

    dossiers = app.Table(
        DOSSIER_TABLE, default=None, partitions=parts, key_type=bytes, value_type=bytes,
        help="Dossier state per MaHoSo (single source of truth).",
    )
    catalogue = app.Table(
        CATALOGUE_TABLE, default=None, partitions=parts, key_type=bytes, value_type=bytes,
        help="Procedure catalogue rows, one copy per partition.",
    )
    return dossiers, catalogue
