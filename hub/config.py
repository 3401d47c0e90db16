"""Typed configuration of the whole hub, validated at start-up with every error reported at once.

Sources, lowest priority first:

1. the embedded defaults (``hub/defaults/thanhhoa-city.toml``: Thanh Hóa City against the
   local simulators, so ``dvc-hub up`` runs with no file at all);
2. a TOML file given with ``--config`` or ``DVC_HUB_CONFIG`` (it replaces the defaults whole);
3. environment variables ``DVC_HUB_<SECTION>__<KEY>``, e.g. ``DVC_HUB_KAFKA__BOOTSTRAP_SERVERS``
   or ``DVC_HUB_PORTAL__AUTH__CLIENT_SECRET``. Secrets belong here, not in files.

Secrets are :class:`pydantic.SecretStr`: printing a setting shows ``**********``, and
``dvc-hub config show`` never reveals them (nor credentials written into a URL or a connector's
``options``). Every key is documented in ``docs/configuration.md``.

Secrets have **no default**. Only a configuration that says ``profile = "demo"`` (the embedded
defaults do) gets the simulators' public demo secrets for those it leaves out; every long-running
command (:func:`load_service_settings`) refuses any other configuration that misses a secret or
uses one of the public demo values (:data:`DEMO_SECRET_VALUES`), naming the environment variable
to set. A connector instance's secrets come from ``DVC_HUB_CONNECTORS__<NAME>__AUTH__<FIELD>``,
``<NAME>`` being the instance name in upper case with ``-`` and ``.`` written ``_``.

Example::

    >>> from hub.config import load_settings
    >>> s = load_settings()
    >>> s.kafka.bootstrap_servers
    '127.0.0.1:9092'
    >>> len([c for c in s.connectors if c.type == "motcua"])
    35
"""

from __future__ import annotations

import getpass
import ipaddress
import logging
import os
import re
import socket
import tomllib
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from hub.credentials import Part

DEFAULTS_FILE = Path(__file__).parent / "defaults" / "thanhhoa-city.toml"

log = logging.getLogger(__name__)

#: A secret that is not set: every secret field defaults to it, so a configuration that leaves a
#: secret out still loads and ``config check`` can name every missing one at once.
UNSET = SecretStr("")

#: The one list of the secret values this repository publishes (embedded defaults, simulators,
#: docs, tests) plus the usual placeholders. Anyone can read them, so outside the demo profile
#: they count as no secret at all. :func:`is_demo_secret` also knows the one-stop simulator's
#: per-unit keys (``demo-key-<unit>``) and anything else starting with ``demo-``.
DEMO_SECRET_VALUES: frozenset[str] = frozenset({
    "demo-api-token",
    "demo-portal-secret",
    "demo-qlvb-password",
    "demo-only-change-me",
    "change-me-in-production",
    "change-me",
    "changeme",
    "portal-secret",
})
_DEMO_PREFIX = "demo-"

#: The demo profile's value of each secret it fills in (all members of :data:`DEMO_SECRET_VALUES`).
DEMO_ID_HASH_KEY = "demo-only-change-me"
DEMO_API_TOKEN = "demo-api-token"  # noqa: S105 - a public demo value, refused outside the demo profile
DEMO_QLVB_PASSWORD = "demo-qlvb-password"  # noqa: S105 - idem
DEMO_PORTAL_SECRET = "demo-portal-secret"  # noqa: S105 - idem

#: Outside the demo profile the ID-hash key must be at least this long (and not a repeated pattern):
#: an ID number has only 10^12 values, so with a guessable key every hash is reversed in seconds.
MIN_ID_HASH_KEY_LENGTH = 32
_MIN_ID_HASH_KEY_DISTINCT = 8
_KEY_HINT = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def demo_api_key(unit: str) -> str:
    """The one-stop simulator's public API key of a unit (demo profile only).

    >>> demo_api_key("14767")
    'demo-key-14767'
    """
    return f"demo-key-{unit}"


def is_demo_secret(value: str) -> bool:
    """True for a value this repository publishes (so anyone knows it).

    >>> is_demo_secret("demo-key-14767"), is_demo_secret("demo-portal-secret"), is_demo_secret("Zq3...")
    (True, True, False)
    """
    v = value.strip()
    return v.lower() in DEMO_SECRET_VALUES or v.lower().startswith(_DEMO_PREFIX)


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (where plain http cannot be sniffed on a wire).

    >>> [is_loopback_host(h) for h in ("127.0.0.2", "::1", "localhost", "10.0.0.1", "example.org")]
    [True, True, True, False, False]
    """
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cleartext_credentials(url: str, credentialed: bool) -> bool:
    """True when requests to ``url`` would carry credentials unencrypted off this machine.

    Credentials are the instance's ``auth`` (``credentialed``) or a userinfo in the URL; they may
    travel over plain http only to a loopback host.

    >>> cleartext_credentials("http://10.1.2.3/api", True), cleartext_credentials("http://127.0.0.1:8101", True)
    (True, False)
    >>> cleartext_credentials("http://u:p@gw.example.vn", False), cleartext_credentials("https://gw", True)
    (True, False)
    """
    parts = urlsplit(url)
    if not (credentialed or parts.username or parts.password):
        return False
    return parts.scheme.lower() != "https" and not is_loopback_host(parts.hostname)


class ConfigError(Exception):
    """The configuration is invalid; the message lists every problem and how to fix it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- Kafka


class KafkaUser(_Model):
    """The SASL user one part of the hub authenticates as (``kafka.users.<part>``)."""

    sasl_username: str
    sasl_password: SecretStr


class KafkaSettings(_Model):
    """How every part of the hub reaches Kafka (embedded broker by default).

    Each part of the hub (``connectors``, ``worker``, ``portal-sync``, ``operator`` for the CLI,
    ``admin`` for topic and ACL creation) asks :meth:`for_part` for its own view of these settings:

    * against the embedded broker (``embedded_broker.enabled`` and ``bootstrap_servers`` at its
      port) with the default ``PLAINTEXT`` protocol, the part's SCRAM-SHA-512 user is read from the
      broker's ``credentials.json`` (:mod:`hub.credentials`) at connection time;
    * against an external cluster, ``security_protocol``/``sasl_*``/``ssl_*`` apply to every part,
      and ``users.<part>`` replaces the user name and password of that part.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    users: dict[Part, KafkaUser] = Field(default_factory=dict)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    outbox_signing_key: SecretStr | None = None
    partitions: Annotated[int, Field(ge=1, le=256)] = 4
    replication_factor: Annotated[int, Field(ge=1, le=5)] = 1
    client_id_prefix: str = "dvc-hub"

    #: The part these settings act for (see :meth:`for_part`); the CLI's by default.
    _part: Part = PrivateAttr(default="operator")
    #: The embedded broker's data directory when the hub runs against it (set by :class:`Settings`).
    _embedded_dir: Path | None = PrivateAttr(default=None)
    #: Where a generated outbox signing key lives (the embedded broker's data directory).
    _secrets_dir: Path | None = PrivateAttr(default=None)
    #: The whole configuration these settings belong to: topic names and app id for the ACLs.
    _hub: Settings | None = PrivateAttr(default=None)

    @field_validator("users", mode="before")
    @classmethod
    def _part_names(cls, value: Any) -> Any:
        # An environment variable name cannot hold "-": DVC_HUB_KAFKA__USERS__PORTAL_SYNC__... is portal-sync.
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for key, user in value.items():
            name = str(key).replace("_", "-")
            # The file's [kafka.users.portal-sync] and the environment's PORTAL_SYNC merge, field by field.
            if isinstance(out.get(name), dict) and isinstance(user, dict):
                out[name] = {**out[name], **user}
            else:
                out[name] = user
        return out

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and ((self.sasl_username and self.sasl_password) or self.users)
        ):
            raise ValueError(
                "security_protocol SASL_* needs sasl_mechanism, and sasl_username and sasl_password "
                "(set DVC_HUB_KAFKA__SASL_PASSWORD in the environment) or kafka.users.<part>"
            )
        if self.outbox_signing_key is not None and len(self.outbox_signing_key.get_secret_value()) < 32:
            raise ValueError("outbox_signing_key must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return self

    def for_part(self, part: Part) -> KafkaSettings:
        """These settings as ``part`` of the hub uses them (its own SASL user; same brokers)."""
        copy = self.model_copy()
        copy._part = part
        return copy

    @property
    def part(self) -> Part:
        """The part of the hub these settings act for."""
        return self._part

    @property
    def hub_settings(self) -> Settings | None:
        """The :class:`Settings` these Kafka settings are part of (None when built on their own)."""
        return self._hub

    @property
    def embedded_dir(self) -> Path | None:
        """The embedded broker's data directory if these settings point at it, else None."""
        return self._embedded_dir

    def effective(self) -> KafkaSettings:
        """The security settings actually used to connect: explicit ones, else the embedded broker's.

        Reads the embedded broker's credentials file each time it is called, so a process that
        loaded its settings before ``dvc-hub up`` started (and formatted) the broker still finds them.
        """
        part = self._part
        if self.security_protocol != "PLAINTEXT" or self.sasl_username:
            user = self.users.get(part)
            if user is None:
                if self.security_protocol.startswith("SASL") and not self.sasl_username:
                    raise ConfigError(
                        f"kafka.security_protocol {self.security_protocol} but no SASL user for the {part}: set "
                        f"kafka.users.{part} (DVC_HUB_KAFKA__USERS__{part.upper().replace('-', '_')}__SASL_USERNAME "
                        "and __SASL_PASSWORD) or kafka.sasl_username/sasl_password"
                    )
                return self
            return self.model_copy(update={"sasl_username": user.sasl_username, "sasl_password": user.sasl_password})
        if self._embedded_dir is None:
            return self
        from hub.credentials import load_credentials

        users = load_credentials(self._embedded_dir)
        if users is None:
            return self  # the embedded broker of an older data directory, or not started yet
        name, password = users[part]
        return self.model_copy(update={
            "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": name, "sasl_password": SecretStr(password),
        })

    def outbox_key(self) -> bytes:
        """The HMAC key that authenticates outbox items (worker and portal sync must share it).

        ``outbox_signing_key`` when set (an external cluster: give the worker and the portal sync
        the same value); otherwise the installation's key, generated on first use in the embedded
        broker's data directory (``outbox-signing.key``, mode 0600).
        """
        if self.outbox_signing_key is not None:
            return self.outbox_signing_key.get_secret_value().encode()
        from hub.credentials import load_or_create_outbox_key

        return load_or_create_outbox_key(self._secrets_dir or Path(".dvc-hub/kafka"))

    def kafka_python_config(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python clients (producer, consumer, admin), for :attr:`part`."""
        k = self.effective()
        cfg: dict[str, Any] = {
            "bootstrap_servers": k.bootstrap_servers.split(","),
            "security_protocol": k.security_protocol,
        }
        if k.security_protocol.startswith("SASL"):
            cfg["sasl_mechanism"] = k.sasl_mechanism
            cfg["sasl_plain_username"] = k.sasl_username
            cfg["sasl_plain_password"] = k.sasl_password.get_secret_value() if k.sasl_password else None
        if k.security_protocol.endswith("SSL"):
            cfg["ssl_cafile"] = str(k.ssl_cafile) if k.ssl_cafile else None
            cfg["ssl_certfile"] = str(k.ssl_certfile) if k.ssl_certfile else None
            cfg["ssl_keyfile"] = str(k.ssl_keyfile) if k.ssl_keyfile else None
            cfg["ssl_password"] = k.ssl_password.get_secret_value() if k.ssl_password else None
            cfg["ssl_check_hostname"] = k.ssl_check_hostname
        return cfg

    def faust_broker_url(self) -> str:
        """``kafka://host:port;host:port`` as faust expects it."""
        return ";".join(f"kafka://{h.strip()}" for h in self.bootstrap_servers.split(","))


class EmbeddedBrokerSettings(_Model):
    """The single-node KRaft broker ``dvc-hub up`` starts when ``enabled``."""

    enabled: bool = True
    data_dir: Path = Path(".dvc-hub/kafka")
    port: Annotated[int, Field(ge=1, le=65535)] = 9092
    controller_port: Annotated[int, Field(ge=1, le=65535)] = 9093


class SimulatorSettings(_Model):
    """Where ``dvc-hub up`` / ``dvc-hub simulate`` serve the simulated source systems.

    The connector and portal URLs in the sample configuration point here; change both together.
    ``enabled``: whether ``up`` starts them; None (the default) follows the profile: on in
    ``profile = "demo"``, off otherwise (a production hub reads the real source systems).
    """

    enabled: bool | None = None
    host: str = "127.0.0.1"
    motcua_port: Annotated[int, Field(ge=0, le=65535)] = 8101
    qlvb_port: Annotated[int, Field(ge=0, le=65535)] = 8102
    portal_port: Annotated[int, Field(ge=0, le=65535)] = 8103
    #: 0: the simulators run without generated traffic (``dvc-hub simulate``'s ``--rate 0``).
    live_rate_per_s: Annotated[float, Field(ge=0)] = 5.0


class PrometheusSettings(_Model):
    """The Prometheus server ``dvc-hub up`` starts when Debian's ``prometheus`` is installed."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 9090
    scrape_interval: Annotated[str, Field(pattern=r"^[0-9]+(ms|s|m)$")] = "5s"
    data_dir: Path = Path(".dvc-hub/prometheus")


class TopicSettings(_Model):
    """Every Kafka topic of the hub, declared once."""

    raw_motcua: str = "dvchub.raw.motcua"
    raw_qlvb: str = "dvchub.raw.qlvb"
    raw_portal: str = "dvchub.raw.portal"
    raw_catalogue: str = "dvchub.raw.catalogue"
    canonical: str = "dvchub.dossier-events"
    dead_letter: str = "dvchub.dead-letter"
    connector_state: str = "dvchub.connector-state"
    partials: str = "dvchub.figures.partials"
    outbox: str = "dvchub.outbox.portal"
    sync_state: str = "dvchub.sync-state"
    audit: str = "dvchub.audit"
    #: A worker whose catalogue is empty asks the connectors to send it again (streams.requests).
    requests: str = "dvchub.requests"


# --------------------------------------------------------------------------- HTTP sources


class ApiKeyAuth(_Model):
    """One-stop systems: header ``X-Api-Key``."""

    kind: Literal["api_key"] = "api_key"
    header: str = "X-Api-Key"
    api_key: SecretStr = UNSET


class BasicAuth(_Model):
    """Document management (QLVB): HTTP Basic."""

    kind: Literal["basic"] = "basic"
    username: str
    password: SecretStr = UNSET


class OAuth2ClientCredentials(_Model):
    """Provincial portal behind the LGSP gateway: OAuth2 client credentials."""

    kind: Literal["oauth2"] = "oauth2"
    token_path: str = "/oauth2/token"  # noqa: S105 - a URL path, not a secret
    client_id: str
    client_secret: SecretStr = UNSET
    refresh_margin_s: Annotated[float, Field(ge=0)] = 60.0


class AccessKeyAuth(_Model):
    """Provinces whose gateway signs requests with an access key / secret key pair."""

    kind: Literal["access_key"] = "access_key"
    access_key: str
    secret_key: SecretStr = UNSET


class NoAuth(_Model):
    """For a source that needs no credentials (a test double, a public catalogue)."""

    kind: Literal["none"] = "none"


_AnyAuth = ApiKeyAuth | BasicAuth | OAuth2ClientCredentials | AccessKeyAuth | NoAuth
AuthSettings = Annotated[
    ApiKeyAuth | BasicAuth | OAuth2ClientCredentials | AccessKeyAuth | NoAuth, Field(discriminator="kind")
]


class RetrySettings(_Model):
    """Capped exponential backoff with full jitter; ``Retry-After`` always wins when larger."""

    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    base_delay_s: Annotated[float, Field(gt=0)] = 0.5
    max_delay_s: Annotated[float, Field(gt=0)] = 30.0
    timeout_s: Annotated[float, Field(gt=0)] = 10.0


class ConnectorInstance(_Model):
    """One running instance of a connector type against one source system."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
    type: Annotated[str, Field(min_length=1)]
    enabled: bool = True
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    auth: AuthSettings = NoAuth()
    unit_code: str | None = None
    poll_interval_s: Annotated[float, Field(gt=0)] = 5.0
    page_size: Annotated[int, Field(ge=1, le=1000)] = 100
    rate_limit_per_s: Annotated[float, Field(gt=0)] = 10.0
    lookback_s: Annotated[int, Field(ge=0)] = 180
    retry: RetrySettings = RetrySettings()
    options: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------- portal sync


class PortalSettings(_Model):
    """Where and how the hub pushes dossiers, progress and statistics back to the portal."""

    enabled: bool = True
    base_url: Annotated[str, Field(pattern=r"^https?://")] = "http://127.0.0.1:8103"
    auth: OAuth2ClientCredentials | AccessKeyAuth = Field(
        default_factory=lambda: OAuth2ClientCredentials(client_id="dvc-hub"),
        discriminator="kind",
    )
    send_id_number: bool = False
    batch_size: Annotated[int, Field(ge=1, le=100)] = 100
    rate_limit_per_s: Annotated[float, Field(gt=0)] = 15.0
    stats_debounce_s: Annotated[float, Field(ge=0)] = 5.0
    stats_interval_s: Annotated[float, Field(gt=0)] = 300.0
    #: A (unit, period) whose figures keep changing is PUT at most once per this interval (plus once
    #: when they have been quiet for ``stats_debounce_s``): a backlog drain must not rewrite every
    #: statistics body every few seconds (issue 12: 7,000+ PUTs in front of the dossiers).
    stats_min_interval_s: Annotated[float, Field(gt=0)] = 300.0
    #: The share of the portal's rate limit reserved for statistics while dossiers wait too (dossiers
    #: have priority; statistics take every slot dossiers leave free, and at least this share).
    stats_rate_share: Annotated[float, Field(gt=0, le=0.5)] = 0.2
    #: Statistics PUTs in flight at once (a slow portal must not make the lane sequential).
    stats_concurrency: Annotated[int, Field(ge=1, le=16)] = 4
    #: Which live periods the statistics lane keeps current: the current and the just-closed
    #: month, quarter and year (``periods_around``), or only the current ones.
    stats_live_periods: Literal["current_and_previous", "current"] = "current_and_previous"
    #: ``"YYYY-MM"``: the hub holds every dossier from this month on (its sources were read from
    #: then), so the statistics of every period starting on or after it are complete and are pushed
    #: too, not only those around now. ``None``: only the periods around now, because the portal's
    #: latest PUT replaces the previous one and the hub's figures of older periods may be partial.
    stats_history_from: str | None = None
    #: ``"YYYY-MM"``: the last month whose periods the history covers (with ``stats_history_from``):
    #: periods starting after it are left out. A replay of a past year sets it to the replay's last
    #: month: an open dossier carries "open at the period's end" into every later month up to today,
    #: and those figure-only-by-carry periods would multiply the statistics to push by five.
    stats_history_to: str | None = None
    breaker_failure_threshold: Annotated[int, Field(ge=1)] = 5
    breaker_reset_s: Annotated[float, Field(gt=0)] = 30.0
    retry: RetrySettings = RetrySettings(max_attempts=12, max_delay_s=60.0)
    #: The outbox consumer's group timing. The heartbeat runs on the same asyncio loop as the
    #: pushes; every stretch of work yields within milliseconds, so a short session is safe — and a
    #: crashed (SIGKILLed) portal sync holds its partitions until its session expires: the outbox
    #: stalls that long after every crash.
    consumer_session_timeout_s: Annotated[float, Field(ge=6, le=300)] = 10.0
    consumer_heartbeat_interval_s: Annotated[float, Field(gt=0)] = 3.0
    consumer_max_poll_interval_s: Annotated[float, Field(ge=10)] = 300.0
    #: Outbox records taken per poll (processing is bounded per poll; the consumer keeps polling,
    #: paused, while a batch is pushed).
    consumer_max_poll_records: Annotated[int, Field(ge=1, le=10_000)] = 500

    @field_validator("auth", mode="before")
    @classmethod
    def _default_kind(cls, value: Any) -> Any:
        # Only DVC_HUB_PORTAL__AUTH__CLIENT_SECRET in the environment, no [portal.auth] in the file:
        # complete it from the default (OAuth2 client "dvc-hub") rather than fail on a missing kind.
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": "oauth2", "client_id": "dvc-hub", **value}
        return value

    @field_validator("stats_history_from", "stats_history_to")
    @classmethod
    def _a_month(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not re.fullmatch(r"[1-9][0-9]{3}-(0[1-9]|1[0-2])", value):
            what = ("the first month whose dossiers the hub holds in full" if info.field_name == "stats_history_from"
                    else "the last month whose periods the history covers")
            raise ValueError(
                f"{info.field_name} is a month written YYYY-MM, like \"2021-01\" ({what}), or left out; got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> PortalSettings:
        if self.consumer_heartbeat_interval_s * 3 > self.consumer_session_timeout_s:
            raise ValueError(
                f"portal.consumer_heartbeat_interval_s ({self.consumer_heartbeat_interval_s}) must be at most a "
                f"third of portal.consumer_session_timeout_s ({self.consumer_session_timeout_s}), or one late "
                "heartbeat evicts the portal sync from its group"
            )
        return self

    @property
    def stats_history_start(self) -> date | None:
        """The first day of ``stats_history_from``, or None when it is not set."""
        if self.stats_history_from is None:
            return None
        year, month = self.stats_history_from.split("-")
        return date(int(year), int(month), 1)

    @property
    def stats_history_end(self) -> date | None:
        """The first day after ``stats_history_to``'s month (exclusive), or None when it is not set."""
        if self.stats_history_to is None:
            return None
        year, month = (int(x) for x in self.stats_history_to.split("-"))
        return date(year + month // 12, month % 12 + 1, 1)


# --------------------------------------------------------------------------- worker, HTTP, KPIs


class WorkerSettings(_Model):
    """The Faust worker that normalises and counts."""

    app_id: str = "dvc-hub"
    store: Annotated[str, Field(pattern=r"^(memory|rocksdb)://")] = "memory://"
    data_dir: Path = Path(".dvc-hub/worker")
    web_host: str = "127.0.0.1"
    web_port: Annotated[int, Field(ge=1, le=65535)] = 6066
    processing_guarantee: Literal["at_least_once"] = "at_least_once"
    #: A SIGKILLed worker stays in the group until its session expires: faust's 60 s default would
    #: stall the hub for a minute after every crash.
    session_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    heartbeat_interval_s: Annotated[float, Field(gt=0)] = 2.0
    commit_interval_s: Annotated[float, Field(gt=0)] = 1.0
    #: Partials feed the report and the portal statistics (debounced there too), not /metrics:
    #: publishing every unit's counts every second during a backfill cost more than the counting.
    partials_interval_s: Annotated[float, Field(gt=0)] = 5.0
    partials_full_refresh_s: Annotated[float, Field(gt=0)] = 30.0
    lag_interval_s: Annotated[float, Field(gt=0)] = 2.0
    #: streams.watchdog: faust can stop fetching one partition for good; a worker whose committed
    #: offset stands still this long with records waiting crashes on purpose to be restarted.
    #: Far above any commit interval or pause a healthy worker has; 0 turns the watchdog off.
    stall_timeout_s: Annotated[float, Field(ge=0)] = 180.0
    #: A ready worker whose catalogue is empty asks the connectors for it again, at most this often
    #: (streams.requests); 0 never asks.
    catalogue_request_interval_s: Annotated[float, Field(ge=0)] = 300.0
    #: How long ``dvc-hub worker`` waits for its topics to appear in the metadata before it exits (code 2).
    topics_timeout_s: Annotated[float, Field(gt=0)] = 30.0


class BoundsSettings(_Model):
    """What the normaliser accepts: plausible dates, bounded versions, codes in a safe charset.

    Everything outside becomes a dead letter with reason ``out_of_range`` (dates, numbers) or
    ``schema`` (a code that is not in its pattern), never a state change or a metric label: one
    dossier dated in year 1 or 9999 once stopped the state agent's recovery and exploded the
    ``period`` label of ``/metrics`` (``docs/streams.md``, "Input bounds"). The patterns are full
    matches, checked after the hub's own refusal of control characters and whitespace.
    """

    #: No dossier of the hub's sources predates online public services; the catalogue's
    #: "valid since ever" is this day too.
    earliest_date: date = date(2000, 1, 1)
    #: Due dates and validity ends run ahead of today, but not by years.
    years_ahead: Annotated[int, Field(ge=0, le=20)] = 2
    max_version: Annotated[int, Field(ge=1, le=2**53)] = 1_000_000
    #: MaHoSo: the Kafka key of everything about the dossier, and a path segment of the portal API.
    dossier_code_pattern: str = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
    #: GSO codes are digits; the charset is wider so that a mistyped code reads "unknown unit".
    unit_code_pattern: str = r"[A-Za-z0-9][A-Za-z0-9._-]{0,9}"
    procedure_code_pattern: str = r"[A-Za-z0-9][A-Za-z0-9._-]{0,59}"
    field_code_pattern: str = r"[A-Za-z0-9][A-Za-z0-9._-]{0,29}"
    source_pattern: str = r"[a-z0-9][a-z0-9._-]{0,39}"

    @field_validator(
        "dossier_code_pattern", "unit_code_pattern", "procedure_code_pattern", "field_code_pattern", "source_pattern"
    )
    @classmethod
    def _a_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc}); write one like [A-Za-z0-9._-]{{1,64}}") from None
        return value

    @model_validator(mode="after")
    def _earliest_in_the_past(self) -> BoundsSettings:
        if self.earliest_date.year < 1900 or self.earliest_date > date.today():  # noqa: DTZ011 - a date, no zone
            raise ValueError(f"earliest_date {self.earliest_date} must be a day between 1900-01-01 and today")
        return self


class MetricsSettings(_Model):
    """How many series the worker's ``/metrics`` may export (``docs/metrics.md`` has the bound per metric)."""

    #: Dated gauges are exported for the periods of the current year and this many previous years
    #: only; older (or future) periods stay in the state, the partials and the reports.
    years_back: Annotated[int, Field(ge=0, le=30)] = 10


class HttpEndpointSettings(_Model):
    """A loopback-by-default HTTP listener (metrics of the connector runner and portal sync)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0


class ApiSettings(_Model):
    """The read API the hub offers the portal (bearer tokens, optionally over TLS)."""

    tokens: list[SecretStr] = Field(default_factory=list)
    #: PEM certificate chain and private key: the API (on ``portal_sync.host:port``) serves https.
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("api.tls_certfile and api.tls_keyfile go together: set both (https) or neither (http)")
        return self


class PrivacySettings(_Model):
    """Keyed hashing of ID numbers at the edge (domain.md §8), and where free text may go."""

    id_hash_key: SecretStr = UNSET
    #: Free text (processing notes, document abstracts) is kept, masked, in the raw topics for
    #: operators; masking finds numbers and e-mails, not every name, so by default it stays out of
    #: dead letters and of the progress rows pushed to the portal. A province that wants the notes
    #: there (masked) turns this on.
    share_free_text: bool = False


class OperatorSettings(_Model):
    """Who runs the operator commands (``dlq replay``, ``connectors reset``): named in their audit records."""

    #: Empty: the operating-system user (``getpass.getuser()``).
    name: str | None = None

    def identity(self) -> str:
        """The configured name, else the OS user, else ``uid:<n>`` (a container without a passwd entry)."""
        if self.name and self.name.strip():
            return self.name.strip()
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"

    def audit_fields(self) -> dict[str, str]:
        """``who`` plus where from, for an audit record."""
        try:
            os_user = getpass.getuser()
        except (KeyError, OSError):
            os_user = "unknown"
        return {"who": self.identity(), "os_user": os_user, "host": socket.gethostname()}


class Kpi766Settings(_Model):
    """Decision 766 weights and thresholds; revised nationally over time, so they live here."""

    on_time_weight: float = 20.0
    full_online_weight: float = 12.0
    full_online_threshold: Annotated[float, Field(gt=0, le=1)] = 0.8
    online_share_threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    online_payment_weight: float = 10.0
    online_payment_threshold: Annotated[float, Field(gt=0, le=1)] = 0.8
    electronic_result_weight: float = 6.0
    electronic_result_threshold: Annotated[float, Field(gt=0, le=1)] = 0.8


class TargetSettings(_Model):
    """The city's 2021-2025 targets (domain.md §6), shown beside the actual figures."""

    level3_coverage: float = 1.0
    level4_coverage_min: float = 0.75
    level4_coverage_max: float = 0.90
    online_share: float = 0.50


class Settings(BaseSettings):
    """The whole hub's configuration. See ``docs/configuration.md`` for every key."""

    model_config = SettingsConfigDict(
        env_prefix="DVC_HUB_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    #: ``"demo"``: the simulators' public demo secrets fill in every secret left out, and none is
    #: refused (never in production). ``"production"``: no secret has a default.
    profile: Literal["demo", "production"] = "production"
    city_name: str = "Thành phố Thanh Hóa"
    province_code: str = "38"
    kafka: KafkaSettings = KafkaSettings()
    embedded_broker: EmbeddedBrokerSettings = EmbeddedBrokerSettings()
    simulators: SimulatorSettings = SimulatorSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    topics: TopicSettings = TopicSettings()
    connectors: list[ConnectorInstance] = Field(default_factory=list)
    connector_runner: HttpEndpointSettings = HttpEndpointSettings(port=9465)
    portal: PortalSettings = PortalSettings()
    portal_sync: HttpEndpointSettings = HttpEndpointSettings(port=9466)
    worker: WorkerSettings = WorkerSettings()
    api: ApiSettings = ApiSettings()
    privacy: PrivacySettings = PrivacySettings()
    kpi: Kpi766Settings = Kpi766Settings()
    bounds: BoundsSettings = BoundsSettings()
    metrics: MetricsSettings = MetricsSettings()
    targets: TargetSettings = TargetSettings()
    #: ``DVC_HUB_OPERATOR=name`` works as well as ``DVC_HUB_OPERATOR__NAME`` (NoDecode: not JSON).
    operator: Annotated[OperatorSettings, NoDecode] = OperatorSettings()
    unit_registry: Path | None = None

    @field_validator("connectors")
    @classmethod
    def _unique_names(cls, value: list[ConnectorInstance]) -> list[ConnectorInstance]:
        seen: set[str] = set()
        dupes = sorted({c.name for c in value if c.name in seen or seen.add(c.name)})  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"connector names must be unique; repeated: {', '.join(dupes)}")
        return value

    @field_validator("operator", mode="before")
    @classmethod
    def _operator_by_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _credentials_over_tls(self) -> Settings:
        """A URL that carries credentials is https, except on loopback (a configuration, not a test double)."""
        bad = [(f"connectors.{c.name}.base_url", c.base_url) for c in self.connectors
               if cleartext_credentials(c.base_url, c.auth.kind != "none")]
        if cleartext_credentials(self.portal.base_url, credentialed=True):
            bad.append(("portal.base_url", self.portal.base_url))
        if bad:
            raise ValueError("\n  - ".join(
                f"{where} = {mask_url(url)} would send credentials in clear text: use https:// (plain http "
                "is accepted only on loopback: 127.0.0.0/8, ::1, localhost)" for where, url in bad))
        return self

    @model_validator(mode="after")
    def _demo_secrets(self) -> Settings:
        """In the demo profile, every secret left out takes the value the simulators accept."""
        if self.profile != "demo":
            return self
        # Copies, never in place: a default sub-model instance is shared by every Settings.
        if not self.privacy.id_hash_key.get_secret_value():
            self.privacy = self.privacy.model_copy(update={"id_hash_key": SecretStr(DEMO_ID_HASH_KEY)})
        if not self.api.tokens:
            self.api = self.api.model_copy(update={"tokens": [SecretStr(DEMO_API_TOKEN)]})
        self.portal = self.portal.model_copy(update={"auth": _demo_auth(self.portal.auth, "")})
        self.connectors = [c.model_copy(update={"auth": _demo_auth(c.auth, c.unit_code or c.name)})
                           for c in self.connectors]
        return self

    def secret_problems(self) -> list[str]:
        """Every secret that is missing or public, with the variable to set; empty in the demo profile."""
        if self.profile == "demo":
            return []
        return [f"{where}: {what}; set {env}" for where, env, what in _secret_findings(self)]

    @model_validator(mode="after")
    def _locate_embedded_broker(self) -> Settings:
        # The hub's clients authenticate to the embedded broker with the credentials it generated
        # in its data directory (hub.credentials); they are looked up only for the broker at the
        # embedded port on loopback, never sent to another bootstrap server.
        eb, k = self.embedded_broker, self.kafka
        local = {f"{host}:{eb.port}" for host in ("127.0.0.1", "localhost")}
        if eb.enabled and {s.strip() for s in k.bootstrap_servers.split(",")} <= local:
            k._embedded_dir = eb.data_dir
        k._secrets_dir = eb.data_dir
        k._hub = self
        return self

    def connector(self, name: str) -> ConnectorInstance:
        """The instance called ``name``; a clear error lists the known names otherwise."""
        for c in self.connectors:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.connectors[:10])
        raise ConfigError(f"no connector instance named {name!r}; known: {known}... (dvc-hub connectors list)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 - signature fixed by pydantic-settings
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file (passed as init kwargs), so secrets can stay out of files.
        return (_EnvWithoutConnectorPaths(env_settings), init_settings)


# --------------------------------------------------------------------------- secrets


def _demo_auth(auth: _AnyAuth, unit: str) -> _AnyAuth:
    """A copy of an auth block with the demo simulators' secret where it has none (demo profile only)."""
    demo = {"api_key": demo_api_key(unit), "basic": DEMO_QLVB_PASSWORD, "oauth2": DEMO_PORTAL_SECRET,
            "access_key": DEMO_PORTAL_SECRET}
    field = _AUTH_SECRET_FIELD.get(auth.kind)
    if field is None or getattr(auth, field).get_secret_value():
        return auth
    return auth.model_copy(update={field: SecretStr(demo[auth.kind])})


_AUTH_SECRET_FIELD = {"api_key": "api_key", "basic": "password", "oauth2": "client_secret", "access_key": "secret_key"}


def connector_env_segment(name: str) -> str:
    """The ``<NAME>`` of an instance in ``DVC_HUB_CONNECTORS__<NAME>__...``.

    >>> connector_env_segment("motcua-14767")
    'MOTCUA_14767'
    """
    return re.sub(r"[^0-9A-Za-z]", "_", name).upper()


def _judge(value: str, *, key: bool = False) -> str | None:
    """What is wrong with a secret's value, or None."""
    if not value.strip():
        return "not set"
    if is_demo_secret(value):
        return "is a public demo value (anyone can read it in this repository)"
    if key and (len(value) < MIN_ID_HASH_KEY_LENGTH or len(set(value)) < _MIN_ID_HASH_KEY_DISTINCT):
        return (f"is too weak: an ID number has only 10^12 values, so a short or patterned key lets anyone "
                f"reverse every hash; use at least {MIN_ID_HASH_KEY_LENGTH} random characters ({_KEY_HINT})")
    return None


def _secret_findings(settings: Settings) -> Iterator[tuple[str, str, str]]:
    """(setting, environment variable, problem) of every secret a running hub would use."""
    problem = _judge(settings.privacy.id_hash_key.get_secret_value(), key=True)
    if problem:
        yield "privacy.id_hash_key", "DVC_HUB_PRIVACY__ID_HASH_KEY", problem
    if settings.portal.enabled:
        # The read API runs with the portal sync (`push run`).
        tokens = [t.get_secret_value() for t in settings.api.tokens]
        problems = [p for p in (_judge(t) for t in tokens) if p] or ([] if tokens else ["not set"])
        if problems:
            yield "api.tokens", "DVC_HUB_API__TOKENS='[\"<token>\"]'", problems[0]
        field = _AUTH_SECRET_FIELD[settings.portal.auth.kind]
        problem = _judge(getattr(settings.portal.auth, field).get_secret_value())
        if problem:
            yield f"portal.auth.{field}", f"DVC_HUB_PORTAL__AUTH__{field.upper()}", problem
    for c in settings.connectors:
        if not c.enabled or c.auth.kind == "none":
            continue
        field = _AUTH_SECRET_FIELD[c.auth.kind]
        problem = _judge(getattr(c.auth, field).get_secret_value())
        if problem:
            env = f"DVC_HUB_CONNECTORS__{connector_env_segment(c.name)}__AUTH__{field.upper()}"
            yield f"connectors[{c.name}].auth.{field}", env, problem


#: The one line every long-running command prints or logs in the demo profile.
DEMO_NOTICE = "demo profile: the simulators' public demo secrets are in use; not for production"


def require_secrets(settings: Settings, command: str, origin: str = "the configuration") -> str | None:
    """Refuse to run ``command`` on missing or public secrets.

    Returns :data:`DEMO_NOTICE` in the demo profile (the caller shows it), else None. Raises
    :class:`ConfigError` naming each secret and the environment variable to set.
    """
    if settings.profile == "demo":
        return DEMO_NOTICE
    problems = settings.secret_problems()
    if problems:
        raise ConfigError(
            f"{command}: {origin} lacks {len(problems)} secret(s) (secrets have no default outside "
            f"profile = \"demo\"):\n" + "\n".join(f"  - {p}" for p in problems)
            + "\nSet them in the environment (never in the file); or, to try the hub against the "
            "simulators, set profile = \"demo\" (public demo secrets, never in production)."
        )
    return None


# --------------------------------------------------------------------------- loading


class _EnvWithoutConnectorPaths(PydanticBaseSettingsSource):
    """The environment source, minus ``DVC_HUB_CONNECTORS__<NAME>__...`` (applied by instance name).

    pydantic-settings would turn those into a dict that replaces the file's list of instances.
    """

    def __init__(self, inner: PydanticBaseSettingsSource) -> None:
        super().__init__(inner.settings_cls)
        self.inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        values = self.inner()
        if isinstance(values.get("connectors"), dict):
            values.pop("connectors")
        return values


def _apply_connector_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Apply ``DVC_HUB_CONNECTORS__<NAME>__<KEY>[__<KEY>...]`` to the file's instance ``<NAME>``."""
    prefix = "DVC_HUB_CONNECTORS__"
    overrides = {k.upper(): v for k, v in environ.items() if k.upper().startswith(prefix)}
    if not overrides:
        return
    instances = [c for c in data.get("connectors", []) if isinstance(c, dict)]
    by_segment: dict[str, list[dict[str, Any]]] = {}
    for c in instances:
        by_segment.setdefault(connector_env_segment(str(c.get("name", ""))), []).append(c)
    problems = []
    for var, value in sorted(overrides.items()):
        segment, *path = var[len(prefix):].split("__")
        matches = by_segment.get(segment, [])
        if len(matches) != 1 or not path or not all(path):
            why = "no connector instance has that name" if not matches else (
                "several instances share that name once upper-cased" if len(matches) > 1 else "no key after the name")
            problems.append(f"  - {var}: {why} (form: {prefix}<NAME>__AUTH__<FIELD>, <NAME> = "
                            "the instance name upper-cased, - and . written _)")
            continue
        node = matches[0]
        for part in path[:-1]:
            child = node.get(part.lower())
            if not isinstance(child, dict):
                child = {}
                node[part.lower()] = child
            node = child
        node[path[-1].lower()] = value
    if problems:
        raise ConfigError("invalid connector variables in the environment:\n" + "\n".join(problems))


def _format_errors(err: ValidationError, origin: str, data: Mapping[str, Any] | None = None) -> str:
    lines = [f"invalid configuration ({origin}): {err.error_count()} problem(s)"]
    connectors = (data or {}).get("connectors")
    for e in err.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        parts = [str(p).upper() for p in e["loc"] if not isinstance(p, int)]
        if (len(e["loc"]) > 2 and e["loc"][0] == "connectors" and isinstance(e["loc"][1], int)
                and isinstance(connectors, list) and e["loc"][1] < len(connectors)
                and isinstance(connectors[e["loc"][1]], dict)):
            # A list has no environment variable by index; an instance has one by name.
            name = str(connectors[e["loc"][1]].get("name", ""))
            parts = ["CONNECTORS", connector_env_segment(name), *[str(p).upper() for p in e["loc"][2:]]]
        if not parts:  # a rule across settings: its message names them
            lines.append(f"  - {e['msg'].removeprefix('Value error, ')}")
            continue
        env = "DVC_HUB_" + "__".join(parts)
        lines.append(f"  - {loc}: {e['msg']} (fix it in the file, or set {env})")
    return "\n".join(lines)


def config_origin(path: Path | str | None = None) -> Path:
    """The file :func:`load_settings` reads: ``path``, else ``DVC_HUB_CONFIG``, else the embedded defaults."""
    chosen = Path(path) if path else Path(os.environ["DVC_HUB_CONFIG"]) if os.environ.get("DVC_HUB_CONFIG") else None
    return chosen or DEFAULTS_FILE


def load_settings(path: Path | str | None = None) -> Settings:
    """Load the file (or ``DVC_HUB_CONFIG``, or the embedded defaults), apply the environment.

    Raises :class:`ConfigError` listing every problem at once. Secrets are not judged here (``config
    show`` must work on an incomplete file): long-running commands use :func:`load_service_settings`.
    """
    file = config_origin(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {file} not found; pass --config PATH or unset DVC_HUB_CONFIG") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {file} is not valid TOML: {exc}") from None
    _apply_connector_env(data, os.environ)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(file), data)) from None


def load_service_settings(path: Path | str | None, command: str) -> Settings:
    """:func:`load_settings` for a long-running command: refuses missing or public secrets.

    Outside ``profile = "demo"`` a secret left out or set to a published demo value stops the
    command before it binds a port or touches Kafka (:func:`require_secrets`).
    """
    settings = load_settings(path)
    notice = require_secrets(settings, command, str(config_origin(path)))
    if notice:
        log.warning("%s: %s", command, notice)
    return settings


# --------------------------------------------------------------------------- redaction

#: A query parameter or ``options`` key whose value is a credential (matched anywhere in the name).
SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|sig|auth|cred|session|cookie|bearer", re.IGNORECASE)
_MASK = "**********"


def mask_url(url: str) -> str:
    """``url`` with its userinfo and secret-looking query values masked (``config show``, errors).

    >>> mask_url("https://hub:pw@gw.example.vn/api?unit=380&access_token=abc")
    'https://***@gw.example.vn/api?unit=380&access_token=***'
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rpartition("@")[2]
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(k, "***" if SECRET_NAME.search(k) else v) for k, v in pairs], safe="*") if pairs else (
            parts.query)
        fragment = "***" if parts.fragment and "=" in parts.fragment else parts.fragment
        return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
    except ValueError:
        return "***"


def _mask_free_form(value: Any, *, secret_key: bool = False) -> Any:
    """Mask values under secret-looking keys, and credentials inside URLs, at any depth."""
    if isinstance(value, dict):
        return {k: _mask_free_form(v, secret_key=bool(SECRET_NAME.search(str(k)))) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_free_form(v, secret_key=secret_key) for v in value]
    if secret_key and value not in (None, "", True, False):
        return _MASK
    return _mask_urls(value)


def _mask_urls(value: Any) -> Any:
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    if isinstance(value, dict):
        return {k: _mask_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_urls(v) for v in value]
    return value


def redacted_dump(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-able data with every secret masked (``dvc-hub config show``).

    Secret fields print as ``**********``; any URL loses its userinfo and secret-looking query
    values; a connector's free-form ``options`` lose every value under a secret-looking key.
    """
    dumped: dict[str, Any] = _mask_urls(settings.model_dump(mode="json"))
    for c in dumped.get("connectors", []):
        c["options"] = _mask_free_form(c.get("options", {}))
    return dumped
