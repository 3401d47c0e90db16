"""Kafka clients configured the one way the hub uses them.

Delivery settings are explicit, never left to a library default: kafka-python 3 defaults to
``acks=all`` with idempotence, aiokafka to ``acks=1``, and a silent difference between the two
is how acknowledged events get lost on a broker crash (reliability.md).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    NewTopic,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.errors import TopicAlreadyExistsError

from hub.config import KafkaSettings, Settings
from hub.credentials import USER_PREFIX, Part

log = logging.getLogger(__name__)

#: The worker's tables (streams.topics imports these names; this module must not import faust).
DOSSIER_TABLE = "dossiers"
CATALOGUE_TABLE = "catalogue"
WORKER_TABLES = (DOSSIER_TABLE, CATALOGUE_TABLE)


class _ScramOnLoopback(logging.Filter):
    """Drop kafka-python's "Exchanging credentials in the clear" warning for SCRAM.

    It is logged on every SCRAM connection without TLS, yet SCRAM never sends the password (a
    salted challenge-response): on the embedded broker's loopback listener there is nothing to act
    on, and one warning per connection would bury the useful lines of every CLI command.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "credentials in the clear" not in record.getMessage()


logging.getLogger("kafka.net.sasl.scram").addFilter(_ScramOnLoopback())


def producer(kafka: KafkaSettings, client_id: str, **overrides: Any) -> KafkaProducer:
    """An idempotent kafka-python producer: ``acks=all``, ordered retries, bytes in and out."""
    cfg: dict[str, Any] = {
        **kafka.kafka_python_config(),
        "client_id": f"{kafka.client_id_prefix}-{client_id}",
        "acks": "all",
        "enable_idempotence": True,
        "max_in_flight_requests_per_connection": 5,
        "retries": 2**31 - 1,
        "linger_ms": 5,
        "compression_type": None,
        "request_timeout_ms": 30_000,
        "delivery_timeout_ms": 120_000,
    }
    cfg.update(overrides)
    return KafkaProducer(**cfg)


def consumer(kafka: KafkaSettings, client_id: str, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A kafka-python consumer; manual commits unless ``overrides`` says otherwise."""
    cfg: dict[str, Any] = {
        **kafka.kafka_python_config(),
        "client_id": f"{kafka.client_id_prefix}-{client_id}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    cfg.update(overrides)
    return KafkaConsumer(*topics, **cfg)


def admin(kafka: KafkaSettings, client_id: str = "admin", **overrides: Any) -> KafkaAdminClient:
    """A kafka-python admin client (as ``kafka``'s part: :func:`ensure_topics` uses the admin's)."""
    cfg: dict[str, Any] = {**kafka.kafka_python_config(), "client_id": f"{kafka.client_id_prefix}-{client_id}"}
    cfg.update(overrides)
    return KafkaAdminClient(**cfg)


def changelog_topic_name(settings: Settings, table: str) -> str:
    """Name faust gives a table's changelog topic: ``<worker.app_id>-<table>-changelog``."""
    return f"{settings.worker.app_id}-{table}-changelog"


def leader_topic_name(settings: Settings) -> str:
    """faust's assignor leader topic (one partition; every worker of the app subscribes to it)."""
    return f"{settings.worker.app_id}-__assignor-__leader"


def read_topic(kafka: KafkaSettings, client_id: str, topic: str) -> list[Any] | None:
    """Every record of ``topic`` (all partitions) from the beginning to the end it had, ordered by
    (partition, offset); None when the topic does not exist.

    For the small compacted topics the CLI reads whole (sync state, partials, the catalogue
    changelog, audit); the dead-letter topic is read by position (``hub.commands.dlq``).
    """
    from kafka import TopicPartition

    c = consumer(kafka, client_id, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        if not parts:
            return None
        c.assign(parts)
        c.seek_to_beginning(*parts)
        end = c.end_offsets(parts)
        out: list[Any] = []
        while any(c.position(tp) < end[tp] for tp in parts):
            for records in c.poll(timeout_ms=1000).values():
                out.extend(records)
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        c.close()


def hub_topics(settings: Settings) -> list[NewTopic]:
    """Every topic the hub owns, with its partitions and retention policy.

    The worker's own topics are here too: its tables' changelogs (compacted, as many partitions
    as the canonical topic they are co-partitioned with) and faust's assignor leader topic. faust
    would declare them itself, but only once its consumer runs, racing its own agents: a fresh
    worker once wrote its catalogue table while the changelog was not yet in its metadata, and
    faust refused every write with ``PartitionsMismatch``. Created here, before the worker starts,
    and checked by ``dvc-hub worker`` (:func:`check_topics`), faust finds them in place.
    """
    t, k = settings.topics, settings.kafka
    parts, rf = k.partitions, k.replication_factor
    # Compacted topics are read from the start by every reader (cursors, partials, sync state):
    # small segments and an eager cleaner keep that read short. The active segment is never
    # compacted, so with Kafka's 1 GiB / 7-day default a busy partials topic would keep every
    # publish since the start and `dvc-hub report` would read gigabytes.
    compacted = {
        "cleanup.policy": "compact",
        "segment.ms": "60000",
        "segment.bytes": str(16 * 1024 * 1024),
        "min.cleanable.dirty.ratio": "0.1",
        "min.compaction.lag.ms": "0",
        "max.compaction.lag.ms": "300000",
        "delete.retention.ms": "3600000",
    }
    return [
        NewTopic(t.raw_motcua, parts, rf),
        NewTopic(t.raw_qlvb, parts, rf),
        NewTopic(t.raw_portal, parts, rf),
        NewTopic(t.raw_catalogue, parts, rf),
        NewTopic(t.canonical, parts, rf),
        NewTopic(t.dead_letter, 1, rf, topic_configs={"retention.ms": str(90 * 86_400_000)}),
        NewTopic(t.connector_state, 1, rf, topic_configs=compacted),
        NewTopic(t.partials, 1, rf, topic_configs=compacted),
        NewTopic(t.outbox, parts, rf),
        NewTopic(t.sync_state, 1, rf, topic_configs=compacted),
        NewTopic(t.audit, 1, rf, topic_configs={"retention.ms": "-1"}),
        # Requests between the hub's parts (a worker asking the connectors for the catalogue):
        # small, and worthless after a day.
        NewTopic(t.requests, 1, rf, topic_configs={"retention.ms": str(86_400_000)}),
        *(NewTopic(changelog_topic_name(settings, table), parts, rf, topic_configs=compacted)
          for table in WORKER_TABLES),
        NewTopic(leader_topic_name(settings), 1, rf),
    ]


def worker_topics(settings: Settings) -> list[NewTopic]:
    """The topics ``dvc-hub worker`` needs before faust starts (what :func:`check_topics` checks).

    Those its agents read and write, its changelogs and faust's leader topic; not the connector
    state, the sync state nor the audit trail, which the worker never touches (nor may describe).
    """
    t = settings.topics
    other = {t.connector_state, t.sync_state, t.audit}
    return [nt for nt in hub_topics(settings) if nt.name not in other]


@dataclass(frozen=True)
class TopicProblem:
    """A topic the worker needs that is missing, not visible to it, or has the wrong partition count."""

    name: str
    expected: int
    found: int | None  # None: not in the metadata the worker is given
    why: str = ""

    def describe(self) -> str:
        """``<name> (expects N partitions): <what is wrong>``."""
        if self.found is None:
            what = self.why or "missing"
        else:
            what = f"has {self.found} partition(s)" + (f", {self.why}" if self.why else "")
        return f"{self.name} (expects {self.expected} partition(s)): {what}"


#: Metadata error codes (Kafka protocol): the topic is not there, or the client may not see it.
_UNKNOWN_TOPIC, _TOPIC_AUTHORIZATION_FAILED = 3, 29


def check_topics(kafka: KafkaSettings, topics: Iterable[NewTopic], *, part: Part = "worker",
                 timeout_s: float = 30.0) -> list[TopicProblem]:
    """What is wrong with ``topics`` as ``part`` sees them in the cluster metadata (empty: all good).

    Each topic must be in the metadata, with exactly its partition count and a leader for every
    partition. A topic just created can take a moment to show (or to get its leaders), so missing
    topics and leaderless partitions are asked again until ``timeout_s``; a wrong partition count
    never heals by waiting and is reported at once.
    """
    wanted = {t.name: t.num_partitions for t in topics}
    client = admin(kafka.for_part(part), f"{part}-topic-check")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            problems = _topic_problems(client, wanted)
            settled = all(p.found is not None and p.found != wanted[p.name] for p in problems)
            if not problems or settled or time.monotonic() > deadline:
                return problems
            time.sleep(0.5)
    finally:
        client.close()


def _topic_problems(client: KafkaAdminClient, wanted: dict[str, int]) -> list[TopicProblem]:
    found = {str(d.get("name")): d for d in client.describe_topics(sorted(wanted))}
    problems: list[TopicProblem] = []
    for name, expected in sorted(wanted.items()):
        desc = found.get(name)
        error = int(desc.get("error_code") or 0) if desc is not None else _UNKNOWN_TOPIC
        if error == _TOPIC_AUTHORIZATION_FAILED:
            problems.append(TopicProblem(name, expected, None, "not visible to this part (no DESCRIBE ACL)"))
            continue
        if desc is None or error:
            problems.append(TopicProblem(name, expected, None))
            continue
        partitions = desc.get("partitions") or []
        if len(partitions) != expected:
            problems.append(TopicProblem(name, expected, len(partitions)))
        elif any(int(p.get("leader_id", -1)) < 0 or int(p.get("error_code") or 0) for p in partitions):
            problems.append(TopicProblem(name, expected, None, "partitions without a leader yet"))
    return problems


def ensure_topics(kafka: KafkaSettings, topics: Iterable[NewTopic]) -> list[str]:
    """Create the topics that do not exist yet (as the admin user); returns the names created.

    On the secured embedded broker it also (re)creates the hub's ACLs (:func:`hub_acls`), so a
    hub that renamed a topic or its worker app id gets permissions for the new names at start-up.
    """
    kafka = kafka.for_part("admin")
    client = admin(kafka)
    try:
        existing = set(client.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            # Another process may win the race to create a topic: that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                client.create_topics(missing, validate_only=False)
        settings = kafka.hub_settings
        if settings is not None and kafka.effective().security_protocol != "PLAINTEXT" and kafka.embedded_dir:
            ensure_acls(client, hub_acls(settings))
        return [t.name for t in missing]
    finally:
        client.close()


# --------------------------------------------------------------------------- ACLs


@dataclass(frozen=True)
class Grant:
    """One ACL of the hub: ``part`` may do ``operations`` on a resource (a name, or a name prefix)."""

    part: Part
    resource: ResourceType
    name: str
    operations: tuple[ACLOperation, ...]
    prefixed: bool = False

    def acls(self) -> list[ACL]:
        pattern = ResourcePattern(
            self.resource, self.name,
            ACLResourcePatternType.PREFIXED if self.prefixed else ACLResourcePatternType.LITERAL,
        )
        return [ACL(f"User:{USER_PREFIX}{self.part}", "*", op, ACLPermissionType.ALLOW, pattern)
                for op in self.operations]


R, W, D = ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE


def hub_grants(settings: Settings) -> list[Grant]:
    """What each part of the hub may do on Kafka: the least that lets it run (docs/security.md).

    Writes, the point of the ACLs (a part that could write another's topic could forge its records):

    * ``connectors``: the raw topics, the connector state (cursors), dead letters (and they read
      the requests topic, where a worker asks for the catalogue again);
    * ``worker``: canonical events, partials, the outbox, dead letters, requests, and its own faust
      topics (``<app_id>-...``: table changelogs, the assignor's leader topic; created by the admin
      with the others, faust declares none: ``topic_allow_declare=False``);
    * ``portal-sync``: the sync state, the outbox (it writes the statistics items), dead letters;
    * ``operator`` (the CLI): the audit trail and the topics ``dvc-hub dlq replay`` writes back to
      (raw topics, outbox). It reads everything, for ``report``, ``push status`` and ``dlq``.

    Topic creation is the admin's (super user): nobody else has ``CREATE`` on the hub's topics, so
    a mistyped topic name is an error, not a new topic.
    """
    t, app = settings.topics, settings.worker.app_id
    raw = [t.raw_motcua, t.raw_qlvb, t.raw_portal, t.raw_catalogue]
    hub = [*raw, t.canonical, t.dead_letter, t.connector_state, t.partials, t.outbox, t.sync_state, t.audit,
           t.requests]
    own = f"{app}-"  # faust's topics and transactional ids of this app
    topic, group, txn = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    # Idempotent producers (every writer of the hub: acks=all, no duplicates on retry) need a producer id.
    idempotent = [Grant(part, ResourceType.CLUSTER, "kafka-cluster", (ACLOperation.IDEMPOTENT_WRITE,))
                  for part in ("connectors", "worker", "portal-sync", "operator")]
    return [
        *idempotent,
        *(Grant("connectors", topic, name, (W, D)) for name in raw),
        Grant("connectors", topic, t.connector_state, (R, W, D)),
        Grant("connectors", topic, t.dead_letter, (W, D)),
        # The worker asks for the catalogue again when its table is empty (streams.requests).
        Grant("connectors", topic, t.requests, (R, D)),
        *(Grant("worker", topic, name, (R, D)) for name in raw),
        Grant("worker", topic, t.canonical, (R, W, D)),
        Grant("worker", topic, t.partials, (R, W, D)),
        Grant("worker", topic, t.outbox, (W, D)),
        Grant("worker", topic, t.dead_letter, (W, D)),
        Grant("worker", topic, t.requests, (W, D)),
        Grant("worker", topic, own, (ACLOperation.ALL,), prefixed=True),
        Grant("worker", group, app, (R, D)),
        Grant("worker", txn, own, (W, D), prefixed=True),
        Grant("portal-sync", topic, t.outbox, (R, W, D)),
        Grant("portal-sync", topic, t.sync_state, (R, W, D)),
        Grant("portal-sync", topic, t.partials, (R, D)),
        Grant("portal-sync", topic, t.dead_letter, (W, D)),
        Grant("portal-sync", topic, f"{app}-{CATALOGUE_TABLE}-changelog", (R, D)),
        Grant("portal-sync", group, f"{settings.kafka.client_id_prefix}-portal-sync", (R, D)),
        *(Grant("operator", topic, name, (R, D)) for name in hub),
        Grant("operator", topic, own, (R, D), prefixed=True),
        *(Grant("operator", topic, name, (W,)) for name in [*raw, t.outbox, t.audit]),
        Grant("operator", group, "*", (D,)),
    ]



def hub_acls(settings: Settings) -> list[ACL]:
    """:func:`hub_grants` as kafka-python ACLs."""
    return [acl for grant in hub_grants(settings) for acl in grant.acls()]


def _acl_id(acl: ACL) -> tuple[str, str, int, int, int, str, int]:
    pattern = acl.resource_pattern
    return (acl.principal, acl.host, int(acl.operation), int(acl.permission_type),
            int(pattern.resource_type), pattern.resource_name, int(pattern.pattern_type))


def _existing_acls(client: KafkaAdminClient) -> set[tuple[str, str, int, int, int, str, int]]:
    any_pattern = ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)
    found, error = client.describe_acls(
        ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY, any_pattern)
    )
    if getattr(error, "errno", None):
        raise RuntimeError(f"cannot list the broker's ACLs: {error}")
    return {_acl_id(acl) for acl in found}


def ensure_acls(client: KafkaAdminClient, acls: list[ACL], timeout_s: float = 30.0) -> int:
    """Create the ``acls`` the broker lacks, and wait until it enforces them; returns how many were created.

    The controller records new ACLs in the metadata log and the broker applies them a moment
    later: a process started right after ``dvc-hub up`` created them must not be refused, hence the
    wait until the broker lists every one of them.
    """
    wanted = {_acl_id(acl): acl for acl in acls}
    missing = [acl for key, acl in wanted.items() if key not in _existing_acls(client)]
    if missing:
        result = client.create_acls(missing)
        failed = result.get("failed", []) if isinstance(result, dict) else []
        if failed:
            raise RuntimeError(f"the broker refused {len(failed)} ACL(s), first: {failed[0]}")
    deadline = time.monotonic() + timeout_s
    while missing and not set(wanted) <= _existing_acls(client):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker did not apply the hub's ACLs within {timeout_s:.0f} s")
        time.sleep(0.1)
    return len(missing)
