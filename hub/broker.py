"""A real, single-node Apache Kafka 4.x broker that the hub starts by itself.

Demos and the end-to-end tests need a Kafka broker, but the machines they run on have no Docker.
They do have Java 17 and Maven, and Kafka is a plain Java program published on Maven Central, so
:class:`EmbeddedBroker` runs the genuine broker (not a fake) in three steps:

1. :meth:`EmbeddedBroker.ensure_jars` asks Maven once for the jars pinned in
   ``deploy/kafka/pom.xml`` and keeps them in ``~/.cache/dvc-hub/kafka/<version>/libs``.
2. On the first :meth:`~EmbeddedBroker.start` of a data directory, Kafka's own ``StorageTool``
   formats it for KRaft (the broker is its own controller: no ZooKeeper, one JVM).
3. ``java -cp 'libs/*' kafka.Kafka server.properties`` runs detached from the caller, with its pid
   in ``<data_dir>/broker.pid``, so ``dvc-hub broker start`` can return and ``stop`` find it later.

It authenticates and authorises every client unless built with ``secure=False`` (the test suite's
shared broker only): SCRAM-SHA-512 on the client listener, one user per part of the hub
(:mod:`hub.credentials`) created when the storage is formatted, SASL/PLAIN for the admin alone on the
controller listener, and Kafka's ``StandardAuthorizer`` denying whatever no ACL allows (the ACLs are
:func:`hub.kafka.hub_acls`, created by :func:`hub.kafka.ensure_topics` as the admin).

Layout of a data directory (mode 0700)::

    <data_dir>/cluster.id          the KRaft cluster id, generated once
    <data_dir>/credentials.json    the SCRAM users and their random passwords (0600), generated once
    <data_dir>/secured             "1" when the storage was formatted with authentication
    <data_dir>/outbox-signing.key  the outbox HMAC key (0600; hub.sync.signing), generated on first use
    <data_dir>/server.properties   rendered from deploy/kafka/server.properties.tmpl on each start (0600)
    <data_dir>/broker.pid          pid of the running JVM
    <data_dir>/kraft/              log.dirs: topics and the metadata log (meta.properties = formatted)
    <data_dir>/logs/broker.log     the JVM's stdout/stderr: warnings, errors, crashes
    <data_dir>/logs/server.log     Kafka's full INFO log (rolling, 3 x 10 MB)

Example::

    broker = EmbeddedBroker(Path(".dvc-hub/kafka"))
    broker.start()                  # returns once the broker answers a metadata request
    produce_to(**broker.client_config("worker"))  # bootstrap "127.0.0.1:9092" and the worker's SCRAM user
    broker.stop()

Data survives :meth:`~EmbeddedBroker.stop` / :meth:`~EmbeddedBroker.start` and even
:meth:`~EmbeddedBroker.kill` (SIGKILL): Kafka recovers its log segments on the next start.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import IO, Any

from hub.credentials import CREDENTIALS_FILE, Part, ensure_private_dir, load_or_create_credentials
from hub.process import die_with_parent

__all__ = [
    "DEFAULT_CONTROLLER_PORT",
    "DEFAULT_PORT",
    "MIN_JAVA",
    "BrokerError",
    "BrokerStatus",
    "EmbeddedBroker",
    "default_cache_root",
    "deploy_dir",
    "free_port",
    "pinned_kafka_version",
    "wait_for_port",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
MIN_JAVA = 17
HOST = "127.0.0.1"
# The single node is both broker and controller; any id works, it only has to stay the same.
NODE_ID = 1
CACHE_ENV = "DVC_HUB_KAFKA_CACHE"
#: ``<data_dir>/secured``: "1" when the storage was formatted with authentication (SCRAM users).
SECURED_MARKER = "secured"

_JAVA_HINT = (
    "install openjdk-17-jre-headless (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`) "
    "or any JDK 17+, make sure `java` is on PATH (or set JAVA_HOME), then retry"
)
_MVN_HINT = "install Maven 3.6+ (Debian/Ubuntu: `apt-get install maven`), make sure `mvn` is on PATH, then retry"


class BrokerError(RuntimeError):
    """The embedded broker cannot be prepared, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class BrokerStatus:
    """A snapshot of an :class:`EmbeddedBroker`, as printed by ``dvc-hub broker status``."""

    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    version: str
    log_file: Path

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (paths as strings), for ``dvc-hub broker status --json``."""
        return {
            "running": self.running,
            "pid": self.pid,
            "bootstrap": self.bootstrap,
            "data_dir": str(self.data_dir),
            "version": self.version,
            "log_file": str(self.log_file),
        }


def deploy_dir() -> Path:
    """``deploy/kafka`` of the source tree: the pom, the properties template, the log4j2 config.

    It is found next to the ``hub`` package, which is where it lives in a checkout and in an
    editable install (``pip install -e .``), the only ways the embedded broker is meant to be used.
    """
    return Path(__file__).resolve().parent.parent / "deploy" / "kafka"


def pinned_kafka_version(pom: Path | None = None) -> str:
    """The Kafka release pinned by ``<kafka.version>`` in ``deploy/kafka/pom.xml``.

    The pom is the single place where the version is written, so the cache directory name and
    the jars Maven fetches cannot disagree.
    """
    pom = pom or deploy_dir() / "pom.xml"
    try:
        text = pom.read_text(encoding="utf-8")
    except OSError as exc:
        raise BrokerError(
            f"cannot read {pom}: the embedded broker needs the deploy/kafka directory of a DVC Hub "
            "checkout (run from the source tree or an editable install)"
        ) from exc
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", text)
    if match is None:
        raise BrokerError(f"{pom} does not define <kafka.version>")
    return match.group(1)


def default_cache_root() -> Path:
    """Where jars are cached, one ``<version>/libs`` per Kafka release.

    ``$DVC_HUB_KAFKA_CACHE`` when set (CI caches it between runs), else ``~/.cache/dvc-hub/kafka``.
    """
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dvc-hub" / "kafka"


def free_port(host: str = HOST) -> int:
    """A TCP port that is free right now on ``host`` (the kernel picks it).

    Nothing reserves it: another process may take it before you bind it, which is why callers that
    need two ports should ask for both before starting anything.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, host: str = HOST, timeout: float = 30.0) -> bool:
    """Poll until something accepts TCP connections on ``host:port``; False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The JVM binds with SO_REUSEADDR, so connections left in TIME_WAIT by a killed broker do
        # not block it; without the same option here, a restart right after kill() would be refused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:]) or "(log is empty)"


def _new_cluster_id() -> str:
    """A KRaft cluster id in Kafka's format: 16 random bytes, URL-safe base64, no padding.

    Kafka's ``Uuid.randomUuid()`` never hands out ids starting with "-" (they read as command-line
    options), so neither does this.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):
            return cid


class EmbeddedBroker:
    """One single-node Kafka 4.x broker (KRaft, broker + controller in one JVM) on 127.0.0.1.

    Construct it cheaply: nothing happens until :meth:`start`. Several instances may point at the
    same ``data_dir`` (``dvc-hub broker start`` in one process, ``broker stop`` in another): the
    pid file in the data directory is the shared truth.

    Args:
        data_dir: where the broker keeps everything (see the module docstring); created if needed.
        port: the PLAINTEXT port clients bootstrap from.
        controller_port: the KRaft controller port (internal, but it must be free too).
        kafka_version: the release to run; defaults to the one pinned in ``deploy/kafka/pom.xml``.
        cache_dir: the directory holding the jars; defaults to
            ``$DVC_HUB_KAFKA_CACHE/<version>/libs`` or ``~/.cache/dvc-hub/kafka/<version>/libs``.
        num_partitions: partitions of auto-created topics.
        heap: the JVM's maximum heap (``-Xmx``); 512m is plenty for demos and tests.
        die_with_parent: stop the broker when the process that started it dies (Linux only). Tests
            want this; ``dvc-hub broker start`` does not (the broker must outlive the command).
        secure: authenticate (SCRAM-SHA-512) and authorise (ACLs) every client, with per-installation
            credentials generated into ``<data_dir>/credentials.json`` on the first start (see
            :mod:`hub.credentials`). Only the test suite's shared broker turns it off. A data
            directory keeps the mode it was formatted with: an unsecured one is moved aside (kept, not
            deleted) when it is started secured.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = DEFAULT_PORT,
        controller_port: int = DEFAULT_CONTROLLER_PORT,
        kafka_version: str | None = None,
        cache_dir: Path | None = None,
        *,
        num_partitions: int = 1,
        heap: str = "512m",
        die_with_parent: bool = False,
        secure: bool = True,
    ) -> None:
        if port == controller_port:
            raise BrokerError(f"the broker port and the controller port must differ (both are {port})")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.version = kafka_version or pinned_kafka_version()
        self.libs_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_root() / self.version / "libs"
        self.num_partitions = num_partitions
        self.heap = heap
        self.die_with_parent = die_with_parent
        self.secure = secure
        # Only set when this object started the JVM: lets us reap it (no zombie) and notice at once
        # that it died during start-up.
        self._proc: subprocess.Popen[bytes] | None = None

    # ----------------------------------------------------------------- paths and properties

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"``, the ``bootstrap_servers`` value for any Kafka client."""
        return f"{HOST}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def log_file(self) -> Path:
        """The JVM's stdout/stderr: Kafka's warnings and errors, and any JVM crash message."""
        return self.log_dir / "broker.log"

    @property
    def server_log(self) -> Path:
        """Kafka's complete INFO log (rolled at 10 MB, 3 files kept)."""
        return self.log_dir / "server.log"

    @property
    def kraft_dir(self) -> Path:
        """``log.dirs``: the topics' partitions and the KRaft metadata log."""
        return self.data_dir / "kraft"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def jars_cached(self) -> bool:
        """True when :meth:`ensure_jars` has nothing to download."""
        return (self.libs_dir / f"kafka_2.13-{self.version}.jar").is_file()

    # ----------------------------------------------------------------- prerequisites

    def check_java(self) -> Path:
        """The ``java`` executable to use, after checking that it is Java 17 or newer.

        ``$JAVA_HOME/bin/java`` wins over ``java`` on PATH, as in Kafka's own scripts.
        """
        java_home = os.environ.get("JAVA_HOME")
        candidate = Path(java_home) / "bin" / "java" if java_home else None
        java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
        if java is None:
            raise BrokerError(f"Java {MIN_JAVA}+ not found: {_JAVA_HINT}")
        try:
            out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrokerError(f"cannot run {java} -version ({exc}): {_JAVA_HINT}") from exc
        # `java -version` writes to stderr: 'openjdk version "17.0.15" ...' or 'java version "1.8.0_392"'.
        match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
        if match is None:
            raise BrokerError(f"cannot tell the version of {java}: {_JAVA_HINT}")
        major = int(match.group(1))
        if major == 1 and match.group(2):  # Java 8 and older call themselves 1.x
            major = int(match.group(2))
        if major < MIN_JAVA:
            raise BrokerError(f"Java {MIN_JAVA}+ required by Kafka 4, found Java {major} ({java}): {_JAVA_HINT}")
        return Path(java)

    def ensure_jars(self) -> Path:
        """Fetch the Kafka jars from Maven Central unless they are cached; return the libs directory.

        Runs ``mvn dependency:copy-dependencies`` on ``deploy/kafka/pom.xml`` into a temporary
        sibling directory and renames it into place, so an interrupted download never looks
        complete and two processes fetching at once do not mix their files.
        """
        if self.jars_cached:
            return self.libs_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                f"Maven (`mvn`) not found; it is needed once, to fetch the Kafka {self.version} jars "
                f"from Maven Central into {self.libs_dir}: {_MVN_HINT}"
            )
        pom = deploy_dir() / "pom.xml"
        if not pom.is_file():
            raise BrokerError(f"{pom} is missing: run from a DVC Hub checkout or an editable install")
        self.libs_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.libs_dir.with_name(f"{self.libs_dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom),
            f"-Dkafka.version={self.version}",
            "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
        ]  # fmt: skip
        log.info("fetching Kafka %s jars from Maven Central into %s", self.version, self.libs_dir)
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BrokerError("Maven did not finish fetching the Kafka jars within 15 minutes") from exc
        if out.returncode != 0 or not (tmp / f"kafka_2.13-{self.version}.jar").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            # Maven 3.8 still emits colour resets in batch mode; they only clutter the message.
            text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
            tail = "\n".join(text.splitlines()[-30:])
            raise BrokerError(
                f"Maven could not fetch Kafka {self.version} (exit {out.returncode}); is Maven Central "
                f"reachable (proxy settings go in ~/.m2/settings.xml)?\n{' '.join(cmd)}\n{tail}"
            )
        try:
            tmp.rename(self.libs_dir)
        except OSError:
            # Another process finished first: keep its copy if it is complete.
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.jars_cached:
                raise
        return self.libs_dir

    # ----------------------------------------------------------------- process bookkeeping

    def _marker(self) -> str:
        # A system property that only this data directory's JVM carries: it tells our broker apart
        # from an unrelated process that inherited a stale pid.
        return f"-Ddvc.hub.kafka.data={self.data_dir}"

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            # Our own child: poll() also reaps it, so a dead broker does not linger as a zombie.
            return self._proc.poll() is None
        proc = Path("/proc") / str(pid)
        if proc.is_dir():
            try:
                stat = (proc / "stat").read_text(encoding="utf-8", errors="replace")
                cmdline = (proc / "cmdline").read_bytes().decode("utf-8", errors="replace")
            except OSError:
                return False
            state = stat.rsplit(")", 1)[-1].split()[0]
            return state != "Z" and self._marker() in cmdline.split("\0")
        if not Path("/proc/self").is_dir():  # no procfs (macOS): trust the pid
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return False

    def _running_pid(self) -> int | None:
        pid = self._read_pid()
        return pid if pid is not None and self._alive(pid) else None

    def status(self) -> BrokerStatus:
        """Whether this data directory's broker process is alive, and where to reach it."""
        pid = self._running_pid()
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=self.bootstrap,
            data_dir=self.data_dir,
            version=self.version,
            log_file=self.log_file,
        )

    # ----------------------------------------------------------------- start

    @property
    def credentials_file(self) -> Path:
        """``<data_dir>/credentials.json``: the SCRAM users of a secured broker (mode 0600)."""
        return self.data_dir / CREDENTIALS_FILE

    def credentials(self) -> dict[Part, tuple[str, str]]:
        """Each part's (username, password) on this broker, generated on the first call (secured only)."""
        if not self.secure:
            raise BrokerError("this broker runs without authentication: it has no credentials")
        return load_or_create_credentials(self.data_dir)

    def client_config(self, part: Part = "admin") -> dict[str, Any]:
        """kafka-python connection arguments for ``part`` (``bootstrap_servers`` and, if secured, SASL)."""
        cfg: dict[str, Any] = {"bootstrap_servers": self.bootstrap}
        if self.secure:
            name, password = self.credentials()[part]
            cfg.update(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                       sasl_plain_username=name, sasl_plain_password=password)
        return cfg

    def _security_block(self) -> str:
        if not self.secure:
            return "# (security off: the test suite's shared broker only)\n"
        name, password = self.credentials()["admin"]
        scram = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{name}"'
        plain = f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{name}"'
        return "\n".join([
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            f'listener.name.client.scram-sha-512.sasl.jaas.config={scram} password="{password}";',
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            "sasl.mechanism.controller.protocol=PLAIN",
            f'listener.name.controller.plain.sasl.jaas.config={plain} password="{password}" user_{name}="{password}";',
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:{name}",
            "",
        ])

    def _render_properties(self) -> None:
        template = Template((deploy_dir() / "server.properties.tmpl").read_text(encoding="utf-8"))
        protocol = "SASL_PLAINTEXT" if self.secure else "PLAINTEXT"
        text = template.substitute(
            node_id=NODE_ID,
            port=self.port,
            controller_port=self.controller_port,
            log_dirs=self.kraft_dir,
            num_partitions=self.num_partitions,
            client_protocol=protocol,
            controller_protocol=protocol,
            security=self._security_block(),
        )
        # It holds the admin password when secured: readable by the hub's user only, like the data dir.
        self.properties_file.unlink(missing_ok=True)
        fd = os.open(self.properties_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)

    def _cluster_id(self) -> str:
        path = self.data_dir / "cluster.id"
        if path.is_file():
            return path.read_text(encoding="ascii").strip()
        cid = _new_cluster_id()
        path.write_text(cid + "\n", encoding="ascii")
        return cid

    def _classpath(self) -> str:
        # The JVM expands "dir/*" to every jar in dir itself, so the command line stays short.
        return str(self.libs_dir / "*")

    def _format_storage(self, java: Path) -> None:
        """Format ``log.dirs`` for KRaft, once: Kafka refuses to start on an unformatted directory.

        A secured broker's SCRAM users go into the metadata log here (``--add-scram``). The
        arguments are passed in a ``0600`` argument file (``java @file``), not on the command line,
        where any local user could read the passwords in ``/proc/<pid>/cmdline``.
        """
        args = [
            "kafka.tools.StorageTool", "format",
            "--cluster-id", self._cluster_id(), "--config", str(self.properties_file),
        ]  # fmt: skip
        if self.secure:
            for name, password in self.credentials().values():
                args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        argfile = self.data_dir / "format.args"
        argfile.unlink(missing_ok=True)
        fd = os.open(argfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            # One argument per line, quoted: the launcher's @file syntax.
            fh.write("\n".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in args) + "\n")
        cmd = [
            str(java), "-Xmx256m", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={deploy_dir() / 'log4j2.xml'}", f"-Dkafka.logs.dir={self.log_dir}",
            "-cp", self._classpath(), f"@{argfile}",
        ]  # fmt: skip
        log.info("formatting KRaft storage in %s", self.kraft_dir)
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        finally:
            argfile.unlink(missing_ok=True)
        if out.returncode != 0:
            raise BrokerError(
                f"kafka.tools.StorageTool format failed (exit {out.returncode}):\n{out.stdout}{out.stderr}"
            )
        (self.data_dir / SECURED_MARKER).write_text("1\n" if self.secure else "0\n", encoding="ascii")

    def _formatted_secure(self) -> bool | None:
        """Whether the existing storage was formatted secured (None: not formatted yet)."""
        if not (self.kraft_dir / "meta.properties").is_file():
            return None
        marker = self.data_dir / SECURED_MARKER
        if marker.is_file():
            return marker.read_text(encoding="ascii").strip() == "1"
        return False  # formatted by a hub version without authentication

    def _prepare_storage(self, java: Path) -> None:
        formatted = self._formatted_secure()
        if formatted is not None and formatted != self.secure:
            if not self.secure:
                raise BrokerError(
                    f"{self.data_dir} holds a secured broker; start it secured, or use another data directory"
                )
            # An unsecured data directory (an older hub's demo data): keep it, but never serve it
            # without authentication. The broker starts on a fresh, secured storage.
            aside = self.data_dir / f"kraft.unsecured-{time.strftime('%Y%m%d-%H%M%S')}"
            self.kraft_dir.rename(aside)
            (self.data_dir / "cluster.id").unlink(missing_ok=True)
            log.warning("%s was formatted without authentication; moved it to %s and formatting a secured "
                        "broker (delete the old directory once you no longer need its data)", self.kraft_dir, aside)
            self.kraft_dir.mkdir(parents=True, exist_ok=True)
            formatted = None
        if formatted is None:
            self._format_storage(java)

    def _jvm_command(self, java: Path) -> list[str]:
        return [
            str(java),
            self._marker(),
            f"-Xmx{self.heap}",
            "-Xms64m",
            # Kafka's own GC settings (bin/kafka-run-class.sh), minus the 1 GiB heap.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            # A broker out of memory is broken for good; dying lets start() report it.
            "-XX:+ExitOnOutOfMemoryError",
            f"-XX:ErrorFile={self.log_dir / 'hs_err_pid%p.log'}",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={deploy_dir() / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(self.properties_file),
        ]

    def start(self, timeout: float = 60.0) -> BrokerStatus:
        """Start the broker (a no-op if it already runs) and return once it answers clients.

        Raises:
            BrokerError: Java or Maven is missing, a port is taken, or the broker died or did not
                answer within ``timeout`` seconds; the message ends with the tail of its log.

        ``timeout`` counts from the launch of the JVM: the one-off jar download and storage format
        come before it and are not included.
        """
        current = self.status()
        if current.running:
            return current
        for name, port in (("broker", self.port), ("controller", self.controller_port)):
            if not _port_is_free(port):
                raise BrokerError(
                    f"{name} port {HOST}:{port} is already in use (another Kafka?); stop it or choose another port"
                )
        java = self.check_java()
        self.ensure_jars()
        # The data directory holds the credentials and every record: the hub's user only.
        ensure_private_dir(self.data_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.kraft_dir.mkdir(parents=True, exist_ok=True)
        # Rendered on every start, so changed ports take effect; the static voter set makes that
        # safe for the controller port too.
        self._render_properties()
        self._prepare_storage(java)

        started = time.monotonic()
        with self.log_file.open("ab") as out:
            out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting Kafka {self.version}\n".encode())
            out.flush()
            self._proc = self._spawn(java, out)
        self.pid_file.write_text(f"{self._proc.pid}\n", encoding="ascii")
        log.info("Kafka %s starting, pid %d", self.version, self._proc.pid)
        try:
            self._wait_until_ready(started + timeout)
        except BrokerError:
            self._terminate(self._proc.pid, 10.0)
            raise
        log.info("Kafka %s up at %s in %.1f s", self.version, self.bootstrap, time.monotonic() - started)
        return self.status()

    def _spawn(self, java: Path, out: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self._jvm_command(java),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            # Its own session: Ctrl-C in the terminal that ran `dvc-hub broker start` must not reach it.
            start_new_session=True,
            preexec_fn=die_with_parent if self.die_with_parent and sys.platform == "linux" else None,  # noqa: PLW1509 - only calls prctl(2), safe between fork and exec
        )

    def _wait_until_ready(self, deadline: float) -> None:
        """Block until the broker lists itself in a metadata response (it is then unfenced)."""
        assert self._proc is not None
        last_error = "the port never opened"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(self._failure(f"Kafka exited with code {self._proc.returncode} during start-up"))
            if wait_for_port(self.port, timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                try:
                    if self._answers():
                        return
                    last_error = "the broker did not list itself in the metadata yet"
                except Exception as exc:  # noqa: BLE001 - any client error just means "not ready yet"
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise BrokerError(self._failure(f"Kafka did not answer at {self.bootstrap} in time ({last_error})"))

    def _answers(self) -> bool:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(
            **self.client_config("admin"),
            client_id="dvc-hub-broker-probe",
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
        )
        try:
            brokers = admin.describe_cluster().get("brokers", [])
        finally:
            admin.close()
        # DescribeCluster also lists fenced brokers: ours is ready once the controller unfenced it.
        return any(b.get("broker_id") == NODE_ID and not b.get("is_fenced", False) for b in brokers)

    def _failure(self, what: str) -> str:
        return f"{what}.\nLast lines of {self.log_file}:\n{_tail(self.log_file)}\n(full log: {self.server_log})"

    # ----------------------------------------------------------------- stop

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _terminate(self, pid: int, timeout: float) -> None:
        self._signal(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            log.warning("Kafka (pid %d) ignored SIGTERM for %.0f s; sending SIGKILL", pid, timeout)
            self._signal(pid, signal.SIGKILL)
            self._wait_gone(pid, 10.0)
        self._forget(pid)

    def _forget(self, pid: int) -> None:
        if self._proc is not None and self._proc.pid == pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None
        if self._read_pid() == pid:
            self.pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the broker down cleanly (SIGTERM), or SIGKILL it after ``timeout`` s; no-op if stopped."""
        pid = self._running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        self._terminate(pid, timeout)

    def kill(self) -> None:
        """SIGKILL the broker, like a crash or a power cut of the process: for recovery tests.

        The pid file is left behind on purpose, as a real crash would; :meth:`start` ignores it.
        """
        pid = self._running_pid()
        if pid is None:
            return
        self._signal(pid, signal.SIGKILL)
        self._wait_gone(pid, 10.0)
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait(timeout=5)
            self._proc = None
