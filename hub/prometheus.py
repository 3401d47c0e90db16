"""Run a real Prometheus server as a child process: for tests and for ``dvc-hub up``.

The hub does not re-implement Prometheus: it starts the real binary (Debian's ``prometheus``
package, or any release on ``PATH``) on a loopback port with its own configuration and data
directory, waits until ``/-/ready`` answers, queries it over the HTTP API and stops it.

Example (needs the ``prometheus`` binary)::

    >>> import tempfile
    >>> from pathlib import Path
    >>> from hub.prometheus import PrometheusServer, ScrapeTarget
    >>> with PrometheusServer(Path(tempfile.mkdtemp()),                       # doctest: +SKIP
    ...                       [ScrapeTarget("dvchub-worker", ["127.0.0.1:6066"])],
    ...                       scrape_interval="1s") as prom:
    ...     prom.wait_for('up{job="dvchub-worker"}')
    ...     print(prom.url, prom.query_value("count(up)"))
    http://127.0.0.1:40123 1.0

The configuration file is written as JSON (YAML is a superset of JSON), so no YAML library is
needed at run time.

The server runs **without** the lifecycle and admin APIs (no ``--web.enable-lifecycle``, no
``--web.enable-admin-api``): on a loopback port any local user could otherwise ``POST /-/quit``,
``/-/reload`` or delete series. The hub stops it by signal (:meth:`PrometheusServer.stop`) and
restarts it to load a new configuration.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from hub.config import Settings

__all__ = [
    "DEFAULT_RULES_DIR",
    "PrometheusError",
    "PrometheusServer",
    "Sample",
    "ScrapeTarget",
    "default_rule_files",
    "find_prometheus",
    "hub_scrape_targets",
    "render_config",
]

#: The recording and alert rules kept in the repository (``deploy/prometheus/rules``).
DEFAULT_RULES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "rules"

_INSTALL_HINT = (
    "install it with `apt-get install -y prometheus` (Debian/Ubuntu), or put a Prometheus 2.x "
    "release's `prometheus` binary on PATH, or pass binary=/path/to/prometheus"
)


class PrometheusError(RuntimeError):
    """Prometheus could not be found, started, or queried; the message says what to do."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One scrape job: a job name and the ``host:port`` addresses it scrapes."""

    job: str
    targets: Sequence[str]
    metrics_path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)
    #: ``https`` for a target serving TLS (the portal sync with ``api.tls_*``).
    scheme: str = "http"


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: its labels (``__name__`` included when present) and value."""

    labels: dict[str, str]
    value: float


def find_prometheus(binary: str | Path | None = None) -> Path:
    """The Prometheus binary: ``binary`` if given, else ``prometheus`` on PATH, else /usr/bin/prometheus."""
    candidates: list[Path] = []
    if binary is not None:
        candidates.append(Path(binary))
    else:
        on_path = shutil.which("prometheus")
        if on_path:
            candidates.append(Path(on_path))
        candidates.append(Path("/usr/bin/prometheus"))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise PrometheusError(f"no Prometheus binary found (looked at {', '.join(map(str, candidates))}); {_INSTALL_HINT}")


def default_rule_files(rules_dir: Path = DEFAULT_RULES_DIR) -> list[Path]:
    """The repository's rule files (empty when running from an installed package without ``deploy/``)."""
    return sorted(rules_dir.glob("*.yml")) if rules_dir.is_dir() else []


def hub_scrape_targets(settings: Settings) -> list[ScrapeTarget]:
    """The hub's own scrape jobs, as configured: worker, connector runner and portal sync.

    Job names are the ones the rules and dashboards in ``deploy/`` expect.
    """

    def addr(host: str, port: int) -> str:
        # A component bound to every interface is still reached over loopback from here.
        return f"{'127.0.0.1' if host in {'0.0.0.0', '::', ''} else host}:{port}"  # noqa: S104

    return [
        ScrapeTarget("dvchub-worker", [addr(settings.worker.web_host, settings.worker.web_port)]),
        ScrapeTarget("dvchub-connectors", [addr(settings.connector_runner.host, settings.connector_runner.port)]),
        ScrapeTarget("dvchub-portal-sync", [addr(settings.portal_sync.host, settings.portal_sync.port)],
                     scheme="https" if settings.api.tls_certfile is not None else "http"),
    ]


def render_config(
    targets: Iterable[ScrapeTarget],
    *,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
    rule_files: Iterable[Path] = (),
) -> dict[str, Any]:
    """A Prometheus configuration (as a dict, dumped to JSON = valid YAML) for ``targets``."""
    jobs = [
        {
            "job_name": t.job,
            "metrics_path": t.metrics_path,
            "static_configs": [{"targets": list(t.targets), **({"labels": dict(t.labels)} if t.labels else {})}],
            # The hub's own processes on loopback: their certificate may be self-signed.
            **({"scheme": "https", "tls_config": {"insecure_skip_verify": True}} if t.scheme == "https" else {}),
        }
        for t in targets
    ]
    names = [j["job_name"] for j in jobs]
    if len(set(names)) != len(names):
        raise PrometheusError(f"scrape job names must be unique, got {names}")
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": jobs,
    }


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _parse_value(raw: str) -> float:
    # The API sends sample values as strings, "NaN" and "+Inf" included.
    return float(raw)


class PrometheusServer:
    """A Prometheus server child process on a loopback port, with its data under ``workdir``.

    ``port=None`` picks a free port. ``start()`` fails with :class:`PrometheusError` (and the tail
    of Prometheus' own log) when the binary is missing, the configuration is refused or the server
    is not ready within the timeout. Always ``stop()`` it (or use it as a context manager).
    """

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[ScrapeTarget],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        scrape_interval: str = "15s",
        evaluation_interval: str | None = None,
        rule_files: Iterable[Path] = (),
        retention: str = "15d",
        binary: str | Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.targets = list(targets)
        self.host = host
        self.port = port if port is not None else _free_port(host)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval or scrape_interval
        self.rule_files = [Path(p) for p in rule_files]
        self.retention = retention
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._client = httpx.Client(timeout=10.0)

    # ------------------------------------------------------------------ paths
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9090``."""
        return f"http://{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.workdir / "prometheus.yml"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_file(self) -> Path:
        return self.workdir / "prometheus.log"

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of Prometheus' own log (for error messages)."""
        try:
            return "\n".join(self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # ------------------------------------------------------------------ life cycle
    def write_config(self) -> Path:
        """Write the configuration file (also done by :meth:`start`)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = render_config(
            self.targets,
            scrape_interval=self.scrape_interval,
            evaluation_interval=self.evaluation_interval,
            rule_files=self.rule_files,
        )
        self.config_file.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        return self.config_file

    def command(self, binary: Path) -> list[str]:
        """The command line: no lifecycle or admin API (see the module docstring)."""
        return [
            str(binary),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address={self.host}:{self.port}",
            "--log.level=info",
        ]

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until ``/-/ready`` answers 200."""
        if self._proc is not None:
            raise PrometheusError("this Prometheus server is already started")
        binary = find_prometheus(self._binary)
        self.write_config()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command(binary)
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise PrometheusError(
                    f"Prometheus exited with code {code} at start-up (port {self.port} taken, or the configuration "
                    f"{self.config_file} is invalid: check it with `promtool check config`). "
                    f"Its log:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if self._client.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(
            f"Prometheus was not ready within {timeout:.0f}s at {self.url}. Its log:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)

    def close(self) -> None:
        """Stop the server and release the HTTP client."""
        self.stop()
        self._client.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ HTTP API
    def _api(self, path: str, params: dict[str, str] | None = None) -> Any:
        try:
            resp = self._client.get(f"{self.url}/api/v1/{path}", params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url} ({exc}); is it running?") from exc
        try:
            body = resp.json()
        except ValueError:
            raise PrometheusError(f"Prometheus answered {resp.status_code} without JSON on {path}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus refused {path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Evaluate an instant query; a scalar result comes back as one sample without labels."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._api("query", params)
        kind = data["resultType"]
        if kind == "vector":
            return [Sample(dict(r["metric"]), _parse_value(r["value"][1])) for r in data["result"]]
        if kind == "scalar":
            return [Sample({}, _parse_value(data["result"][1]))]
        raise PrometheusError(f"query {expr!r} returned a {kind}, not an instant vector or scalar")

    def query_value(self, expr: str) -> float:
        """The single value of ``expr``; fails unless the result has exactly one sample."""
        result = self.query(expr)
        if len(result) != 1:
            raise PrometheusError(f"query {expr!r} returned {len(result)} samples, expected exactly one: {result[:5]}")
        return result[0].value

    def wait_for(self, expr: str, timeout: float = 20.0, *, min_samples: int = 1) -> list[Sample]:
        """Poll ``expr`` until it returns at least ``min_samples`` non-NaN samples."""
        deadline = time.monotonic() + timeout
        result: list[Sample] = []
        while True:
            result = [s for s in self.query(expr) if not math.isnan(s.value)]
            if len(result) >= min_samples:
                return result
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"query {expr!r} still returned {len(result)} sample(s) after {timeout:.0f}s; "
                    f"targets: {self.target_health()}"
                )
            time.sleep(0.25)

    def target_health(self) -> dict[str, str]:
        """``{scrape URL: health}`` of every active target (``up``, ``down``, ``unknown``)."""
        data = self._api("targets")
        return {t["scrapeUrl"]: t["health"] for t in data["activeTargets"]}

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule (recording and alerting), as the API describes them."""
        data = self._api("rules")
        return [rule for group in data["groups"] for rule in group["rules"]]
