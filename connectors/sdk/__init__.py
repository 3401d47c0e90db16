"""The connector SDK: everything an integration engineer needs to bring a new source into the hub.

Start with :mod:`connectors.sdk.base` (its docstring is a whole connector), test with
:mod:`connectors.sdk.testing`, scaffold with ``dvc-hub connectors new NAME``. The guide is
``docs/connectors.md``.

Public surface (stable; everything else is internal):

- declaring: :class:`Connector`, :class:`CursorStream`, :class:`PageNumberStream`,
  :class:`SnapshotStream`, :class:`Stream`, :class:`Page`, :class:`Reject`, :data:`Cursor`,
  :class:`ConnectorConfig`, :class:`Body`;
- privacy: :class:`Fields` and :class:`Rule` (a stream's allow-list) and the standard lists in
  :mod:`connectors.sdk.fields`;
- authentication: :class:`Authenticator` and the schemes in :mod:`connectors.sdk.auth`;
- errors: :class:`ConnectorError` and its subclasses (tree in :mod:`connectors.sdk.errors`);
- running: :class:`SyncEngine`, :class:`KafkaSink`, :class:`MemorySink`, :class:`KafkaStateStore`,
  :class:`MemoryStateStore`, :func:`load_connector`, :data:`ENTRY_POINT_GROUP`.
"""

from connectors.sdk.auth import (
    AccessKeyAuthenticator,
    ApiKeyAuthenticator,
    Authenticator,
    BasicAuthenticator,
    NoAuthenticator,
    OAuth2ClientCredentialsAuthenticator,
    build_authenticator,
)
from connectors.sdk.base import (
    Connector,
    Cursor,
    CursorStream,
    Page,
    PageNumberStream,
    Reject,
    SnapshotStream,
    Stream,
    StreamClass,
    content_version,
    nfc,
)
from connectors.sdk.config import ConnectorConfig
from connectors.sdk.engine import ConnectorMetrics, CycleReport, SyncEngine
from connectors.sdk.errors import (
    BadPage,
    ConnectorError,
    DeliveryError,
    InvalidAuth,
    RecordError,
    SourceRejected,
    SourceUnavailable,
    scrub_url,
)
from connectors.sdk.http import Body, SourceClient, TokenBucket
from connectors.sdk.registry import ENTRY_POINT_GROUP, ConnectorLoadError, entry_points, load_connector
from connectors.sdk.sinks import KafkaSink, MemorySink, RecordSink
from connectors.sdk.state import ConnectorState, KafkaStateStore, MemoryStateStore, StateStore
from hub.privacy import Fields, Rule

__all__ = [
    "ENTRY_POINT_GROUP",
    "AccessKeyAuthenticator",
    "ApiKeyAuthenticator",
    "Authenticator",
    "BadPage",
    "BasicAuthenticator",
    "Body",
    "Connector",
    "ConnectorConfig",
    "ConnectorError",
    "ConnectorLoadError",
    "ConnectorMetrics",
    "ConnectorState",
    "Cursor",
    "CursorStream",
    "CycleReport",
    "DeliveryError",
    "Fields",
    "InvalidAuth",
    "KafkaSink",
    "KafkaStateStore",
    "MemorySink",
    "MemoryStateStore",
    "NoAuthenticator",
    "OAuth2ClientCredentialsAuthenticator",
    "Page",
    "PageNumberStream",
    "RecordError",
    "RecordSink",
    "Reject",
    "Rule",
    "SnapshotStream",
    "SourceClient",
    "SourceRejected",
    "SourceUnavailable",
    "StateStore",
    "Stream",
    "StreamClass",
    "SyncEngine",
    "TokenBucket",
    "build_authenticator",
    "content_version",
    "entry_points",
    "load_connector",
    "nfc",
    "scrub_url",
]
