"""Typed configuration of the whole hub, validated at start-up with every error reported at once.

Sources, lowest priority first:

1. the embedded defaults (``hub/defaults/thanhhoa-city.toml``: Thanh Hóa City against the
   local simulators, so ``dvc-hub up`` runs with no file at all);
2. a TOML file given with ``--config`` or ``DVC_HUB_CONFIG`` (it replaces the defaults whole);
3. environment variables ``DVC_HUB_<SECTION>__<KEY>``, e.g. ``DVC_HUB_KAFKA__BOOTSTRAP_SERVERS``
   or ``DVC_HUB_PORTAL__AUTH__CLIENT_SECRET``. Secrets belong here, not in files.

Secrets are :class:`pydantic.SecretStr`: printing a setting shows ``**********``, and
``dvc-hub config show`` never reveals them. Every key is documented in ``docs/configuration.md``.

Example::

    >>> from hub.config import load_settings
    >>> s = load_settings()
    >>> s.kafka.bootstrap_servers
    '127.0.0.1:9092'
    >>> len([c for c in s.connectors if c.type == "motcua"])
    35
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hub.credentials import Part

DEFAULTS_FILE = Path(__file__).parent / "defaults" / "thanhhoa-city.toml"


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
    """

    host: str = "127.0.0.1"
    motcua_port: Annotated[int, Field(ge=0, le=65535)] = 8101
    qlvb_port: Annotated[int, Field(ge=0, le=65535)] = 8102
    portal_port: Annotated[int, Field(ge=0, le=65535)] = 8103
    live_rate_per_s: Annotated[float, Field(gt=0)] = 5.0


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


# --------------------------------------------------------------------------- HTTP sources


class ApiKeyAuth(_Model):
    """One-stop systems: header ``X-Api-Key``."""

    kind: Literal["api_key"] = "api_key"
    header: str = "X-Api-Key"
    api_key: SecretStr


class BasicAuth(_Model):
    """Document management (QLVB): HTTP Basic."""

    kind: Literal["basic"] = "basic"
    username: str
    password: SecretStr


class OAuth2ClientCredentials(_Model):
    """Provincial portal behind the LGSP gateway: OAuth2 client credentials."""

    kind: Literal["oauth2"] = "oauth2"
    token_path: str = "/oauth2/token"  # noqa: S105 - a URL path, not a secret
    client_id: str
    client_secret: SecretStr
    refresh_margin_s: Annotated[float, Field(ge=0)] = 60.0


class AccessKeyAuth(_Model):
    """Provinces whose gateway signs requests with an access key / secret key pair."""

    kind: Literal["access_key"] = "access_key"
    access_key: str
    secret_key: SecretStr


class NoAuth(_Model):
    """For a source that needs no credentials (a test double, a public catalogue)."""

    kind: Literal["none"] = "none"


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
        default_factory=lambda: OAuth2ClientCredentials(
            client_id="dvc-hub", client_secret=SecretStr("demo-portal-secret")
        ),
        discriminator="kind",
    )
    send_id_number: bool = False
    batch_size: Annotated[int, Field(ge=1, le=100)] = 100
    rate_limit_per_s: Annotated[float, Field(gt=0)] = 15.0
    stats_debounce_s: Annotated[float, Field(ge=0)] = 5.0
    stats_interval_s: Annotated[float, Field(gt=0)] = 300.0
    #: ``"YYYY-MM"``: the hub holds every dossier from this month on (its sources were read from
    #: then), so the statistics of every period starting on or after it are complete and are pushed
    #: too, not only those around now. ``None``: only the periods around now, because the portal's
    #: latest PUT replaces the previous one and the hub's figures of older periods may be partial.
    stats_history_from: str | None = None
    breaker_failure_threshold: Annotated[int, Field(ge=1)] = 5
    breaker_reset_s: Annotated[float, Field(gt=0)] = 30.0
    retry: RetrySettings = RetrySettings(max_attempts=12, max_delay_s=60.0)

    @field_validator("stats_history_from")
    @classmethod
    def _a_month(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[1-9][0-9]{3}-(0[1-9]|1[0-2])", value):
            raise ValueError(
                f"stats_history_from is a month written YYYY-MM, like \"2021-01\" (the first month whose "
                f"dossiers the hub holds in full), or left out; got {value!r}"
            )
        return value

    @property
    def stats_history_start(self) -> date | None:
        """The first day of ``stats_history_from``, or None when it is not set."""
        if self.stats_history_from is None:
            return None
        year, month = self.stats_history_from.split("-")
        return date(int(year), int(month), 1)


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


class HttpEndpointSettings(_Model):
    """A loopback-by-default HTTP listener (metrics of the connector runner and portal sync)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0


class ApiSettings(_Model):
    """The read API the hub offers the portal (bearer tokens)."""

    tokens: list[SecretStr] = Field(default_factory=lambda: [SecretStr("demo-api-token")])


class PrivacySettings(_Model):
    """Keyed hashing of ID numbers at the edge (domain.md §8)."""

    id_hash_key: SecretStr = SecretStr("change-me-in-production")


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
    targets: TargetSettings = TargetSettings()
    unit_registry: Path | None = None

    @field_validator("connectors")
    @classmethod
    def _unique_names(cls, value: list[ConnectorInstance]) -> list[ConnectorInstance]:
        seen: set[str] = set()
        dupes = sorted({c.name for c in value if c.name in seen or seen.add(c.name)})  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"connector names must be unique; repeated: {', '.join(dupes)}")
        return value

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
        return (env_settings, init_settings)


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}): {err.error_count()} problem(s)"]
    for e in err.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        env = "DVC_HUB_" + "__".join(str(p).upper() for p in e["loc"] if not isinstance(p, int))
        lines.append(f"  - {loc}: {e['msg']} (fix it in the file, or set {env})")
    return "\n".join(lines)


def load_settings(path: Path | str | None = None) -> Settings:
    """Load the file (or ``DVC_HUB_CONFIG``, or the embedded defaults), apply the environment.

    Raises :class:`ConfigError` listing every problem at once.
    """
    chosen = Path(path) if path else Path(os.environ["DVC_HUB_CONFIG"]) if os.environ.get("DVC_HUB_CONFIG") else None
    file = chosen or DEFAULTS_FILE
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {file} not found; pass --config PATH or unset DVC_HUB_CONFIG") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {file} is not valid TOML: {exc}") from None
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(file))) from None


def redacted_dump(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-able data with every secret masked (``dvc-hub config show``)."""
    return settings.model_dump(mode="json")
