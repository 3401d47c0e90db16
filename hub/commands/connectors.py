"""``dvc-hub connectors``: list, check, run, inspect and reset connectors; scaffold new ones.

- ``list``: installed connector types (entry points), configured instances, their saved state;
- ``check NAME``: connect for real; prints one stable key (``ok``, ``cannot_connect``,
  ``invalid_auth``, ``unknown``) and a human line; exit code 0 only for ``ok``;
- ``run [NAME...]``: the connector runner (every enabled instance by default), with ``/metrics``
  and ``/healthz`` on ``connector_runner.host:port``; stops cleanly on SIGTERM or Ctrl-C;
- ``state NAME``: the instance's saved state (cursors, last success) from the state topic;
- ``reset NAME --to CURSOR [--stream S]``: write a new cursor; refused while a runner is running
  (it would overwrite the cursor), audited in the audit topic;
- ``new NAME [--dir DIR]``: a new connector package from the template, green under the contract kit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from hub.config import ConfigError, Settings, load_service_settings, load_settings

log = logging.getLogger(__name__)

#: Seconds a killed runner stays a member of :func:`runner_group` (the broker's session timeout).
LEASE_SESSION_S = 10


def runner_group(settings: Settings) -> str:
    """The consumer group every running connector runner of this hub is a member of (its lease).

    Named after the connector-state topic: the runners that share cursors share the lease, and
    another hub on the same cluster (its own state topic) has its own.
    """
    return f"{settings.kafka.client_id_prefix}-connector-runner.{settings.topics.connector_state}"


class RunnerLease:
    """Membership of :func:`runner_group` for as long as ``connectors run`` runs.

    Why a consumer group: the broker itself keeps it, so ``connectors reset`` sees a runner on
    any host or container (a lock file or a port would only be seen on the same machine, and a
    port may be 0 or published elsewhere), and it expires on its own LEASE_SESSION_S after a
    runner is killed (a lock file would stay, a heartbeat record's freshness would be a guess: a
    runner backing off against a dead source writes nothing for minutes). The member subscribes
    to the connector-state topic with every partition paused: it fetches nothing.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _hold(self) -> None:
        from hub.kafka import consumer

        while True:
            try:
                c = consumer(self.settings.kafka, "connector-runner", group_id=runner_group(self.settings),
                             session_timeout_ms=LEASE_SESSION_S * 1000, heartbeat_interval_ms=2000)
                break
            except Exception as exc:  # noqa: BLE001 - the broker may come up after the runner
                log.warning("connector runner lease: cannot reach Kafka (%s); retrying", type(exc).__name__)
                if self._stop.wait(2.0):
                    return
        try:
            c.subscribe([self.settings.topics.connector_state])
            while not self._stop.is_set():
                try:
                    c.poll(timeout_ms=1000)  # joins, heartbeats; within max_poll_interval_ms
                    if c.assignment():
                        c.pause(*c.assignment())
                except Exception as exc:  # noqa: BLE001 - the lease must outlive a broker hiccup
                    log.warning("connector runner lease: %s; retrying", type(exc).__name__)
                    self._stop.wait(1.0)
        finally:
            c.close()  # leaves the group at once

    def start(self, wait_s: float = 30.0) -> bool:
        """Join the group in a background thread; wait until the broker lists a member (True) or ``wait_s``.

        The runner loads its cursors only after this, so a reset can never slip in between the
        runner reading a cursor and the broker knowing the runner runs.
        """
        self._thread = threading.Thread(target=self._hold, name="runner-lease", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if running_runners(self.settings):
                    return True
            if self._stop.wait(0.5):
                break
        log.warning("connector runner lease: not visible in group %s after %.0f s; running anyway "
                    "(connectors reset may not see this runner)", runner_group(self.settings), wait_s)
        return False

    def stop(self) -> None:
        """Leave the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)


def running_runners(settings: Settings) -> list[str]:
    """``client@host`` of every member of :func:`runner_group` (empty: no runner is running).

    Raises :class:`kafka.errors.KafkaError` when the broker cannot say.
    """
    from kafka.errors import KafkaError

    from hub.kafka import admin

    a = admin(settings.kafka, "connectors-reset")
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                described = a.describe_groups([runner_group(settings)])
                break
            except KafkaError as exc:  # e.g. the group coordinator is still loading
                if not exc.retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        a.close()
    members: list[str] = []
    for info in (described.values() if isinstance(described, dict) else described):
        data = info if isinstance(info, dict) else getattr(info, "_asdict", dict)()
        for m in data.get("members") or []:
            md = m if isinstance(m, dict) else getattr(m, "_asdict", dict)()
            members.append(f"{md.get('client_id', '?')}@{str(md.get('client_host', '?')).lstrip('/')}")
    return members


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def _load_states(settings: Settings) -> dict[str, Any]:
    from connectors.sdk.state import KafkaStateStore

    store = KafkaStateStore(None, settings.kafka, settings.topics.connector_state, timeout_s=10)
    return dict(asyncio.run(store.load_all()))


def _cmd_list(args: argparse.Namespace) -> int:
    from connectors.sdk.errors import scrub_url
    from connectors.sdk.registry import entry_points, load_entry_point

    settings = _settings(args)
    print("Connector types (entry-point group dvc_hub.connectors):")
    for name, ep in sorted(entry_points().items()):
        try:
            cls = load_entry_point(ep)
            print(f"  {name:<16} {ep.value}  {cls.title}")
        except ConfigError as exc:
            print(f"  {name:<16} {ep.value}  BROKEN: {exc}")
    states: dict[str, Any] = {}
    note = ""
    if not args.no_state:
        try:
            states = _load_states(settings)
        except Exception as exc:  # noqa: BLE001 - listing must work without a broker
            note = f" (state unavailable: {type(exc).__name__}; is the broker up? dvc-hub broker status)"
    print(f"Instances ({len(settings.connectors)}){note}:")
    for inst in settings.connectors:
        state = states.get(inst.name)
        cursor = json.dumps(state.cursors, ensure_ascii=False) if state else "-"
        last = state.last_success.isoformat(timespec="seconds") if state and state.last_success else "-"
        flag = "" if inst.enabled else " (disabled)"
        print(f"  {inst.name:<16} {inst.type:<8} {scrub_url(inst.base_url)}{flag}  last_success={last}  "
              f"cursor={cursor}")
    return 0


_HUMAN = {
    "ok": "connected: the source answered and accepted the credentials",
    "cannot_connect": "cannot reach the source or it keeps failing; check base_url, the network and the source",
    "invalid_auth": "the source refused the credentials; check the auth block (secrets come from the environment)",
    "unknown": "the source answered something unexpected; see the detail and the logs",
}


async def _check(settings: Settings, name: str) -> tuple[str, str]:
    from connectors.sdk.errors import ConnectorError
    from connectors.sdk.registry import load_connector

    instance = settings.connector(name)
    cls = load_connector(instance.type)
    async with httpx.AsyncClient() as http:
        connector = cls.from_instance(instance, http)
        try:
            await connector.check()
        except ConnectorError as exc:
            return exc.key, str(exc)
        except Exception as exc:  # noqa: BLE001 - check must answer with a key, whatever happened
            return "unknown", type(exc).__name__
    return "ok", ""


def _cmd_check(args: argparse.Namespace) -> int:
    from hub.privacy import redact_text

    key, detail = asyncio.run(_check(_settings(args), args.name))
    print(key)
    print(_HUMAN[key] + (f" ({redact_text(detail)})" if detail else ""))
    return 0 if key == "ok" else 1


def _cmd_run(args: argparse.Namespace) -> int:
    from connectors.sdk.runner import ConnectorRunner, selected_instances
    from hub.kafka import ensure_topics, hub_topics

    settings = load_service_settings(getattr(args, "config", None), "connectors run")
    instances = selected_instances(settings, args.names)
    if not instances:
        print("no enabled connector instance in the configuration; nothing to run", file=sys.stderr)
        return 2
    t = settings.topics
    wanted = {t.raw_motcua, t.raw_qlvb, t.raw_portal, t.raw_catalogue, t.dead_letter, t.connector_state}
    ensure_topics(settings.kafka, [nt for nt in hub_topics(settings) if nt.name in wanted])
    runner = ConnectorRunner(settings, instances)
    lease = RunnerLease(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await runner.run(stop)

    lease.start()
    try:
        asyncio.run(main())
    finally:
        lease.stop()
    return 0


def _cmd_state(args: argparse.Namespace) -> int:
    settings = _settings(args)
    settings.connector(args.name)
    state = _load_states(settings).get(args.name)
    if state is None:
        print(f"no saved state for {args.name}: it has not run yet (or its state was deleted)")
        return 1
    print(state.model_dump_json(indent=2))
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from connectors.sdk.registry import load_connector
    from connectors.sdk.state import ConnectorState, KafkaStateStore
    from hub.kafka import producer

    settings = _settings(args)
    instance = settings.connector(args.name)
    cls = load_connector(instance.type)
    connector = cls.from_instance(instance, httpx.AsyncClient())  # no request is made
    streams = [s for s in connector.stream_objects if s.incremental]
    stream = connector.stream(args.stream) if args.stream else streams[0]
    try:
        cursor = stream.parse_cursor(args.to)
    except (ValueError, TypeError) as exc:
        print(f"dvc-hub: cannot read cursor {args.to!r} for stream {stream.name}: {exc}", file=sys.stderr)
        return 2
    # A running runner keeps the cursor in memory and would overwrite this one at its next save.
    try:
        runners = running_runners(settings)
    except KafkaError as exc:
        if not args.force:
            print(f"dvc-hub: cannot tell whether a connector runner is running (group {runner_group(settings)}: "
                  f"{type(exc).__name__}); stop it, then repeat with --force", file=sys.stderr)
            return 2
        runners = []
    if runners:
        print(f"dvc-hub: a connector runner is running ({', '.join(runners)} in group {runner_group(settings)}); "
              f"it would overwrite the cursor. Stop it (dvc-hub up stops it too), then reset; a runner that was "
              f"killed leaves the group within {LEASE_SESSION_S} s. --force does not override this.",
              file=sys.stderr)
        return 2
    current = _load_states(settings).get(args.name) or ConnectorState(instance=instance.name, type=instance.type)
    before = current.cursors.get(stream.name)
    current.cursors[stream.name] = cursor
    current.written_by = "reset"
    audit = {"action": "connectors.reset", **settings.operator.audit_fields(), "at": datetime.now(UTC).isoformat(),
             "instance": instance.name, "type": instance.type, "stream": stream.name, "cursor_before": before,
             "cursor_after": cursor, "forced": bool(args.force)}
    p = producer(settings.kafka, "connectors-reset")
    try:
        asyncio.run(KafkaStateStore(p, settings.kafka, settings.topics.connector_state).save(current))
        p.send(settings.topics.audit, value=json.dumps(audit, ensure_ascii=False, default=str).encode(),
               key=f"connectors-reset:{instance.name}".encode()).get(timeout=30)
    finally:
        p.close(10)
    with contextlib.suppress(KafkaError):
        late = running_runners(settings)
        if late:  # started between the check and the write: it may have read the old cursor
            print(f"dvc-hub: warning: a connector runner started meanwhile ({', '.join(late)}); stop it and "
                  "reset again", file=sys.stderr)
            return 1
    print(f"{args.name}: stream {stream.name} cursor set to {json.dumps(cursor, ensure_ascii=False)} "
          f"(audited as {audit['who']})")
    print("start the runner for it to take effect")
    return 0


def _cmd_new(args: argparse.Namespace) -> int:
    from connectors.sdk.scaffold import render

    try:
        root = render(args.name, Path(args.dir))
    except (ValueError, FileExistsError) as exc:
        print(f"dvc-hub: {exc}", file=sys.stderr)
        return 2
    print(f"created {root}")
    print(f"next: cd {root} && pytest   (then pip install -e . and add an instance with type = {args.name!r})")
    return 0


def register(subparsers: Any) -> None:
    """Add ``dvc-hub connectors ...``."""
    parser = subparsers.add_parser("connectors", help="list, check, run and scaffold source connectors",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="connectors_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="connector types, instances and their state")
    p.add_argument("--no-state", action="store_true", help="do not read the state topic (no broker needed)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("check", help="connect to one instance for real; prints ok/cannot_connect/invalid_auth/unknown")
    p.add_argument("name", help="instance name, e.g. motcua-14767")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("run", help="run connector instances (all enabled ones by default)")
    p.add_argument("names", nargs="*", metavar="NAME", help="instance names (default: every enabled instance)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("state", help="an instance's saved cursors and last success")
    p.add_argument("name")
    p.set_defaults(func=_cmd_state)

    p = sub.add_parser("reset", help="write a new cursor for an instance (refused while a runner runs; audited)")
    p.add_argument("name")
    p.add_argument("--to", required=True, metavar="CURSOR",
                   help="motcua: yyyyMMddHHmmss[,MaHoSo]; qlvb: event id; portal: ISO-8601 time; or JSON")
    p.add_argument("--stream", help="stream name (default: the first incremental stream)")
    p.add_argument("--force", action="store_true",
                   help="go ahead when the broker cannot say whether a runner runs (never past a running one)")
    p.set_defaults(func=_cmd_reset)

    p = sub.add_parser("new", help="scaffold a new connector package that passes the contract kit")
    p.add_argument("name", help="lowercase identifier, e.g. acme_motcua (also the connector type)")
    p.add_argument("--dir", default=".", help="where to create the package folder (default: .)")
    p.set_defaults(func=_cmd_new)
