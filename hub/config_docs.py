"""Generate ``docs/configuration.md`` from the settings model: every key, its type, default and env var.

Run ``python -m hub.config_docs > docs/configuration.md``; a test fails when a key has no
description here or the committed file is stale, so the reference cannot drift from the code.
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from hub.config import (
    AccessKeyAuth,
    ApiKeyAuth,
    BasicAuth,
    ConnectorInstance,
    NoAuth,
    OAuth2ClientCredentials,
    Settings,
)

DESCRIPTIONS: dict[str, str] = {
    "profile": (
        "`demo`: every secret left out takes the simulators' public demo value and none is refused (the "
        "embedded defaults; `dvc-hub up` says so; never in production). `production`: no secret has a "
        "default; every long-running command refuses a missing secret, a public demo value or a short "
        "`privacy.id_hash_key`, naming the variable to set (`dvc-hub config check` lists them)."
    ),
    "city_name": "Name of the city or province, shown in reports.",
    "province_code": "GSO code of the province (Thanh Hóa: 38).",
    "kafka": "How every part of the hub reaches Kafka.",
    "kafka.bootstrap_servers": "Comma-separated host:port list.",
    "kafka.security_protocol": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (secured production cluster).",
    "kafka.sasl_mechanism": "SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN; required with SASL_*.",
    "kafka.sasl_username": "SASL user.",
    "kafka.sasl_password": "SASL password (secret: set it in the environment).",
    "kafka.users": "Per-part SASL users on an external cluster: a table per part (`admin`, `connectors`, "
    "`worker`, `portal-sync`, `operator`) with `sasl_username` and `sasl_password`, e.g. "
    "`DVC_HUB_KAFKA__USERS__PORTAL_SYNC__SASL_PASSWORD` (`_` for `-` in variable names). On the embedded "
    "broker the generated `credentials.json` of its data directory is used instead.",
    "kafka.outbox_signing_key": "HMAC key (32+ characters, secret) authenticating outbox items between the worker "
    "and the portal sync; both must have the same. Unset: the installation's key, generated on first use in "
    "`embedded_broker.data_dir/outbox-signing.key` (mode 0600).",
    "kafka.ssl_cafile": "CA bundle that signed the brokers' certificates.",
    "kafka.ssl_certfile": "Client certificate (mutual TLS).",
    "kafka.ssl_keyfile": "Client private key (mutual TLS).",
    "kafka.ssl_password": "Password of the client key (secret).",
    "kafka.ssl_check_hostname": "Verify the broker's host name against its certificate.",
    "kafka.partitions": "Partitions of the hub's keyed topics (the worker parallelism limit).",
    "kafka.replication_factor": "Replication factor of the hub's topics (1 on the embedded broker).",
    "kafka.client_id_prefix": "Prefix of every Kafka client id (visible in broker logs and quotas).",
    "embedded_broker": "The single-node KRaft broker `dvc-hub up` starts.",
    "embedded_broker.enabled": "Start the embedded broker; false = use kafka.bootstrap_servers as it is.",
    "embedded_broker.data_dir": "Where the broker keeps its log segments and metadata (kept across restarts).",
    "embedded_broker.port": "PLAINTEXT listener on 127.0.0.1.",
    "embedded_broker.controller_port": "KRaft controller listener on 127.0.0.1.",
    "simulators": "The simulated source systems `dvc-hub up` runs (demo and tests).",
    "simulators.enabled": (
        "Whether `dvc-hub up` starts the simulators (and the live generator); empty: follow the profile "
        "(on in `profile = \"demo\"`, off otherwise). `up --scenario` needs them on."
    ),
    "simulators.host": "Listen address of the simulators.",
    "simulators.motcua_port": "One-stop simulator port (all units, under /donvi/<unit>).",
    "simulators.qlvb_port": "Document management simulator port.",
    "simulators.portal_port": "Provincial portal simulator port.",
    "simulators.live_rate_per_s": (
        "New dossiers per second the live generator creates (without a scenario); 0: no generated traffic."
    ),
    "prometheus": "The Prometheus server `dvc-hub up` starts when Debian's `prometheus` is installed.",
    "prometheus.enabled": "Start Prometheus with `dvc-hub up` (when installed).",
    "prometheus.host": "Listen address.",
    "prometheus.port": "Listen port.",
    "prometheus.scrape_interval": "How often it scrapes the hub (e.g. 5s).",
    "prometheus.data_dir": "Where it keeps its time series.",
    "topics": "Every Kafka topic of the hub, declared once.",
    "topics.raw_motcua": "Raw one-stop dossier snapshots (key: dossier code).",
    "topics.raw_qlvb": "Raw document-management events.",
    "topics.raw_portal": "Raw portal submissions, payments and ratings.",
    "topics.raw_catalogue": "Raw procedure catalogue rows.",
    "topics.canonical": "Canonical events keyed by dossier code (all sources meet here).",
    "topics.dead_letter": "Records no stage could process, with the reason (no personal data).",
    "topics.connector_state": "Compacted: each connector instance's cursor.",
    "topics.partials": "Compacted: per-partition partial figures of each unit (summed by readers).",
    "topics.outbox": "Items to push to the provincial portal.",
    "topics.sync_state": "Compacted: what the portal holds of each dossier.",
    "topics.audit": "Operator actions such as dead-letter replays.",
    "topics.requests": "Requests between the hub's parts: a worker with an empty catalogue asks the connectors "
                       "to send it again.",
    "connectors": "The connector instances (array of tables `[[connectors]]`).",
    "connectors[].name": "Unique instance name (lower case, digits, . _ -), e.g. motcua-14767.",
    "connectors[].type": "Connector type, as registered in the `dvc_hub.connectors` entry-point group.",
    "connectors[].enabled": "Run this instance with `connectors run`.",
    "connectors[].base_url": "Base URL of the source instance (a one-stop instance may have a path prefix).",
    "connectors[].auth": "Credentials; `kind` selects the scheme (see the auth tables below).",
    "connectors[].unit_code": "GSO code of the unit the instance serves (one-stop systems).",
    "connectors[].poll_interval_s": "Seconds between polls once caught up.",
    "connectors[].page_size": "Records per request (1..1000; the source may cap it lower).",
    "connectors[].rate_limit_per_s": "Maximum requests per second to this source.",
    "connectors[].lookback_s": "Look-back window on the source's clock for late-visible changes (≥ 120).",
    "connectors[].retry": "Retry policy of this instance (see retry keys).",
    "connectors[].retry.max_attempts": "Attempts per request before the poll fails.",
    "connectors[].retry.base_delay_s": "First backoff delay; doubles per attempt, with full jitter.",
    "connectors[].retry.max_delay_s": "Backoff cap (Retry-After wins when larger).",
    "connectors[].retry.timeout_s": "Timeout of one HTTP request.",
    "connectors[].options": "Type-specific extras (see docs/connectors.md).",
    "connector_runner": "The connector runner's HTTP listener (/metrics, /healthz).",
    "connector_runner.host": "Listen address (loopback by default).",
    "connector_runner.port": "Listen port.",
    "portal": "Pushing dossiers, progress and statistics to the provincial portal.",
    "portal.enabled": "Run the portal sync.",
    "portal.base_url": "Base URL of the portal's LGSP gateway.",
    "portal.auth": "OAuth2 client credentials (`kind = \"oauth2\"`) or access key (`kind = \"access_key\"`).",
    "portal.send_id_number": "Send the ID-number hash where the province requires an ID (never names or phones).",
    "portal.batch_size": "Dossiers per synchronisation request (portal maximum: 100).",
    "portal.rate_limit_per_s": "Requests per second (the portal allows about 20).",
    "portal.stats_debounce_s": "Wait this long after a change before pushing a unit's statistics.",
    "portal.stats_interval_s": (
        "Recompute every unit's statistics this often (periods roll over; only changed bodies are pushed)."
    ),
    "portal.stats_min_interval_s": (
        "A (unit, period) whose figures keep changing is pushed at most once per this interval; once they "
        "stop changing for `stats_debounce_s` the final body goes out."
    ),
    "portal.stats_rate_share": (
        "Share of `rate_limit_per_s` reserved for statistics while dossiers wait too (dossiers come first)."
    ),
    "portal.stats_concurrency": "Statistics pushes in flight at once.",
    "portal.stats_live_periods": (
        "Live periods kept current: `current_and_previous` (month, quarter and year, current and just "
        "closed) or `current`. Older periods: `stats_history_from` or `dvc-hub push stats --from`."
    ),
    "portal.stats_history_from": (
        "Month `YYYY-MM` from which the hub holds every dossier (its sources were read from then): the "
        "statistics of every period starting on or after it that has figures are pushed too, not only "
        "the current and just-closed month, quarter and year. Unset: only those (older figures may be "
        "partial and would replace the portal's complete ones). `dvc-hub up --scenario` sets it to the "
        "scenario's first month."
    ),
    "portal.stats_history_to": (
        "Month `YYYY-MM`: the last month whose periods `stats_history_from` covers (periods starting later "
        "are left out). Unset: up to today. `dvc-hub up --scenario` sets it to the scenario's last month, "
        "since open dossiers carry into every later month and would multiply the bodies to push."
    ),
    "portal.breaker_failure_threshold": "Consecutive failures that open the circuit breaker.",
    "portal.breaker_reset_s": "Seconds the breaker stays open before a probe.",
    "portal.retry": "Retry policy of portal requests.",
    "portal.consumer_session_timeout_s": "Outbox consumer group session timeout.",
    "portal.consumer_heartbeat_interval_s": "Outbox consumer heartbeat interval (at most a third of the session).",
    "portal.consumer_max_poll_interval_s": "Longest time between two polls before the group drops the consumer.",
    "portal.consumer_max_poll_records": "Outbox records taken per poll (processing is bounded per poll).",
    "portal.retry.max_attempts": "Attempts per request before the item waits for the breaker.",
    "portal.retry.base_delay_s": "First backoff delay.",
    "portal.retry.max_delay_s": "Backoff cap.",
    "portal.retry.timeout_s": "Timeout of one request.",
    "portal_sync": "The portal sync's HTTP listener (/metrics, /healthz, read API).",
    "portal_sync.host": "Listen address (loopback by default).",
    "portal_sync.port": "Listen port.",
    "worker": "The Faust worker.",
    "worker.app_id": "Faust app id = Kafka consumer group and table changelog prefix.",
    "worker.store": "Table store: memory:// (rebuilt from the changelog at start) or rocksdb://.",
    "worker.data_dir": "Faust's working directory (RocksDB files).",
    "worker.web_host": "Listen address of /metrics and the figures API (loopback: tables are exposed there).",
    "worker.web_port": "Listen port.",
    "worker.processing_guarantee": "at_least_once (counts are idempotent; exactly_once is not relied upon).",
    "worker.session_timeout_s": "Seconds before a silent (killed) worker leaves the group and its partitions move.",
    "worker.heartbeat_interval_s": "Seconds between consumer-group heartbeats (well below the session timeout).",
    "worker.commit_interval_s": "Seconds between offset commits (each one waits for every write the events made).",
    "worker.partials_interval_s": "Seconds between publishes of the changed per-partition unit figures.",
    "worker.partials_full_refresh_s": "Seconds between publishes of all unit figures (bounds staleness).",
    "worker.lag_interval_s": "Seconds between consumer-lag measurements (/metrics, /api/v1/status caught_up).",
    "worker.stall_timeout_s": ("Seconds a source partition (or, during table recovery, a changelog partition) may "
                               "keep records waiting without any progress before the worker exits to be restarted "
                               "(faust can stop fetching a partition); 0 = off."),
    "worker.catalogue_request_interval_s": ("Seconds between two requests of a ready worker whose catalogue is "
                                            "empty for the connectors to send it again; 0 = never ask."),
    "worker.topics_timeout_s": ("Seconds `dvc-hub worker` waits for its topics (with their partitions and "
                                "leaders) to show in the metadata before it exits with code 2."),
    "bounds": "What the normaliser accepts; anything outside is a dead letter (out_of_range or schema).",
    "bounds.earliest_date": "Earliest date any dossier, document, portal or catalogue date may carry (YYYY-MM-DD).",
    "bounds.years_ahead": "Latest accepted date: today plus this many years (due dates, validity ends).",
    "bounds.max_version": "Largest accepted PhienBan (versions are 1..max_version).",
    "bounds.dossier_code_pattern": "Full-match regex of MaHoSo (a Kafka key and a portal URL segment).",
    "bounds.unit_code_pattern": "Full-match regex of unit codes (before the registry lookup).",
    "bounds.procedure_code_pattern": "Full-match regex of MaTTHC.",
    "bounds.field_code_pattern": "Full-match regex of MaLinhVuc (empty is allowed).",
    "bounds.source_pattern": "Full-match regex of a raw record's source name.",
    "metrics": "Bounds of the worker's /metrics series (docs/metrics.md).",
    "metrics.years_back": "Dated gauges cover the current year and this many previous years; older periods stay "
                          "in state, partials and reports.",
    "api": "The read API offered to the portal.",
    "api.tokens": "Accepted bearer tokens (secrets; required with the portal sync): `DVC_HUB_API__TOKENS='[\"t1\"]'`.",
    "api.tls_certfile": "PEM certificate (chain) of the read API: set with `api.tls_keyfile` and it serves https.",
    "api.tls_keyfile": "PEM private key of `api.tls_certfile`.",
    "privacy": "Personal data handling.",
    "privacy.share_free_text": (
        "Let masked free text (processing notes, document abstracts) into dead letters and the portal's progress "
        "push (`NoiDungXuLy`); off: it stays in the raw topics only."
    ),
    "privacy.id_hash_key": (
        "Key of the HMAC that replaces ID numbers at the edge (secret, required; at least 32 random "
        "characters: an ID number has only 10^12 values, so a guessable key reverses every hash)."
    ),
    "operator": "Who runs the operator commands (`dlq replay`, `connectors reset`).",
    "operator.name": ("Name written in their audit records (also `DVC_HUB_OPERATOR=name`, or `operator = \"name\"` "
                      "in the file); unset: the operating-system user."),
    "kpi": "Decision 766 weights and thresholds (revised nationally; keep them current).",
    "kpi.on_time_weight": "Points of indicator 2.1 (on-time processing).",
    "kpi.full_online_weight": "Points of indicator 3.0 (full-online dossiers).",
    "kpi.full_online_threshold": "Rate at which 3.0 earns full points.",
    "kpi.online_share_threshold": "Target of indicator 3.3 (online share).",
    "kpi.online_payment_weight": "Points of indicator 3.6 (online payment).",
    "kpi.online_payment_threshold": "Rate at which 3.6 earns full points.",
    "kpi.electronic_result_weight": "Points of indicator 4.1 (electronic results).",
    "kpi.electronic_result_threshold": "Rate at which 4.1 earns full points.",
    "targets": "The city's 2021–2025 targets shown beside the actual figures.",
    "targets.level3_coverage": "Share of popular procedures offered at level 3 (target 100%).",
    "targets.level4_coverage_min": "Lower bound of the level-4 coverage target (75%).",
    "targets.level4_coverage_max": "Upper bound of the level-4 coverage target (90%).",
    "targets.online_share": "Online dossiers as a share of all dossiers (target 50%).",
    "unit_registry": "CSV of the unit registry; default: the shipped Thanh Hóa City registry.",
}

AUTH_MODELS: tuple[type[BaseModel], ...] = (ApiKeyAuth, BasicAuth, OAuth2ClientCredentials, AccessKeyAuth, NoAuth)
AUTH_DESCRIPTIONS: dict[str, str] = {
    "kind": "Scheme selector.",
    "header": "Header carrying the key.",
    "api_key": "The API key (secret).",
    "username": "User name.",
    "password": "Password (secret).",
    "token_path": "Path of the token endpoint under base_url.",
    "client_id": "OAuth2 client id.",
    "client_secret": "OAuth2 client secret (secret).",
    "refresh_margin_s": "Refresh the token this many seconds before it expires.",
    "access_key": "Access key id.",
    "secret_key": "Secret key used to sign requests (secret).",
}


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(annotation))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(annotation))}]"
    if annotation is type(None):
        return "none"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(table)"
    if isinstance(value, SecretStr):
        return "(secret)" if value.get_secret_value() else "none (secret, required)"
    if isinstance(value, list) and "SecretStr" in str(info.annotation):
        return "(secrets)" if value else "none (secrets, required)"
    return "" if value is None else f"`{value}`"


def _rows(model: type[BaseModel], prefix: str, env_prefix: str | None) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        env = f"{env_prefix}{name.upper()}" if env_prefix is not None else ""
        rows.append((path, _type_name(info.annotation), _default(info), env))
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel) and path != "connectors[].auth":
            rows += _rows(nested, f"{path}.", f"{env}__" if env_prefix is not None else None)
    return rows


def render() -> str:
    """The Markdown reference."""
    out = [
        "# Configuration reference",
        "",
        "Generated by `python -m hub.config_docs` from `hub/config.py`; do not edit by hand.",
        "",
        "Sources, lowest priority first: the embedded defaults (`hub/defaults/thanhhoa-city.toml`), a TOML file",
        "(`--config` or `DVC_HUB_CONFIG`, replacing the defaults whole), then environment variables",
        "`DVC_HUB_<SECTION>__<KEY>`. Secrets (`SecretStr`) are never printed; keep them in the environment.",
        "A connector instance's keys come from `DVC_HUB_CONNECTORS__<NAME>__<KEY>[__<KEY>]`, `<NAME>` being the",
        "instance name upper-cased with `-` and `.` written `_` (`DVC_HUB_CONNECTORS__MOTCUA_380__AUTH__API_KEY`).",
        "Secrets have no default outside `profile = \"demo\"` (see `profile`).",
        "",
        "| key | type | default | environment | meaning |",
        "|---|---|---|---|---|",
    ]
    rows = _rows(Settings, "", "DVC_HUB_")
    rows += _rows(ConnectorInstance, "connectors[].", None)
    for path, typ, default, env in rows:
        desc = DESCRIPTIONS.get(path, "")
        out.append(f"| `{path}` | {typ.replace('|', '&#124;')} | {default} | {f'`{env}`' if env else ''} | {desc} |")
    out += ["", "## Authentication schemes (`auth` tables)", ""]
    for model in AUTH_MODELS:
        kind = model.model_fields["kind"].default
        out += [f"### `kind = \"{kind}\"` — {(model.__doc__ or '').strip()}", "", "| key | type | default | meaning |",
                "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            out.append(f"| `{name}` | {_type_name(info.annotation).replace('|', '&#124;')} | {_default(info)} | "
                       f"{AUTH_DESCRIPTIONS.get(name, '')} |")
        out.append("")
    return "\n".join(out) + "\n"


def undocumented() -> list[str]:
    """Keys of the model with no description (a test keeps this empty)."""
    rows = _rows(Settings, "", "DVC_HUB_") + _rows(ConnectorInstance, "connectors[].", None)
    missing = [p for p, *_ in rows if p not in DESCRIPTIONS]
    missing += [f"auth.{n}" for m in AUTH_MODELS for n in m.model_fields if n not in AUTH_DESCRIPTIONS]
    return missing


if __name__ == "__main__":
    sys.stdout.write(render())
