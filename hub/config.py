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

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULTS_FILE = Path(__file__).parent / "defaults" / "thanhhoa-city.toml"


class ConfigError(Exception):
    """The configuration is invalid; the message lists every problem and how to fix it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- Kafka


class KafkaSettings(_Model):
    """How every part of the hub reaches Kafka (embedded broker by default)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    partitions: Annotated[int, Field(ge=1, le=256)] = 4
    replication_factor: Annotated[int, Field(ge=1, le=5)] = 1
    client_id_prefix: str = "dvc-hub"

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "security_protocol SASL_* needs sasl_mechanism, sasl_username and sasl_password "
                "(set DVC_HUB_KAFKA__SASL_PASSWORD in the environment)"
            )
        return self

    def kafka_python_config(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python clients (producer, consumer, admin)."""
        cfg: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            cfg["sasl_mechanism"] = self.sasl_mechanism
            cfg["sasl_plain_username"] = self.sasl_username
            cfg["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.security_protocol.endswith("SSL"):
            cfg["ssl_cafile"] = str(self.ssl_cafile) if self.ssl_cafile else None
            cfg["ssl_certfile"] = str(self.ssl_certfile) if self.ssl_certfile else None
            cfg["ssl_keyfile"] = str(self.ssl_keyfile) if self.ssl_keyfile else None
            cfg["ssl_password"] = self.ssl_password.get_secret_value() if self.ssl_password else None
            cfg["ssl_check_hostname"] = self.ssl_check_hostname
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
    bounds: BoundsSettings = BoundsSettings()
    metrics: MetricsSettings = MetricsSettings()
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
