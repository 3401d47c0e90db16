"""``dvc-hub broker start|stop|status``: run the embedded Kafka broker for demos.

The broker outlives the command: ``start`` returns once Kafka answers and leaves it running in the
background (pid in ``<data-dir>/broker.pid``); ``stop`` and ``status`` find it again through the
same ``--data-dir``. See :mod:`hub.broker` for what happens underneath.

Examples::

    dvc-hub broker start                      # 127.0.0.1:9092, data in ./.dvc-hub/kafka
    dvc-hub broker status --json
    dvc-hub broker stop
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hub.broker import DEFAULT_CONTROLLER_PORT, DEFAULT_PORT, BrokerError, EmbeddedBroker

DEFAULT_DATA_DIR = Path(".dvc-hub") / "kafka"


def _broker(args: argparse.Namespace) -> EmbeddedBroker:
    return EmbeddedBroker(Path(args.data_dir), port=args.port, controller_port=args.controller_port)


def _start(args: argparse.Namespace) -> int:
    try:
        broker = _broker(args)
        before = broker.status()
        if before.running:
            print(f"broker already running at {before.bootstrap} (pid {before.pid}), logs: {before.log_file}")
            return 0
        if not broker.jars_cached:
            print(f"fetching Kafka {broker.version} jars from Maven Central (once) into {broker.libs_dir}...")
            began = time.monotonic()
            broker.ensure_jars()
            print(f"fetched in {time.monotonic() - began:.0f} s")
        print(f"starting Kafka {broker.version} (data in {broker.data_dir})...")
        began = time.monotonic()
        status = broker.start(timeout=args.timeout)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"broker up at {status.bootstrap} (pid {status.pid}) in {time.monotonic() - began:.1f} s, "
        f"logs: {status.log_file}"
    )
    return 0


def _stop(args: argparse.Namespace) -> int:
    try:
        broker = _broker(args)
        status = broker.status()
        if not status.running:
            print(f"no broker running for {broker.data_dir}")
            return 0
        print(f"stopping broker (pid {status.pid})...")
        broker.stop(timeout=args.timeout)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("broker stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        status = _broker(args).status()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
    elif status.running:
        print(f"running: Kafka {status.version} at {status.bootstrap} (pid {status.pid}), logs: {status.log_file}")
    else:
        print(f"not running (data dir {status.data_dir})")
    # Like `systemctl status`: scripts can test the exit code; 3 means "not running".
    return 0 if status.running else 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``broker`` with its ``start``, ``stop`` and ``status`` subcommands to the hub's CLI."""
    parser = subparsers.add_parser(
        "broker",
        help="run the embedded Kafka 4 broker (demos, tests)",
        description="Start, stop or inspect a single-node Kafka broker (KRaft) on 127.0.0.1.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        help="where the broker keeps topics, logs and its pid (default: %(default)s)",
    )
    common.add_argument("--port", type=int, default=DEFAULT_PORT, help="client (PLAINTEXT) port (default: %(default)s)")
    common.add_argument(
        "--controller-port",
        type=int,
        default=DEFAULT_CONTROLLER_PORT,
        help="KRaft controller port (default: %(default)s)",
    )
    actions = parser.add_subparsers(dest="broker_command", required=True, metavar="{start,stop,status}")

    start = actions.add_parser("start", parents=[common], help="start the broker in the background")
    start.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the broker to answer (default: %(default)s)",
    )
    start.set_defaults(func=_start)

    stop = actions.add_parser("stop", parents=[common], help="stop the broker cleanly")
    stop.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait before SIGKILL (default: %(default)s)",
    )
    stop.set_defaults(func=_stop)

    status = actions.add_parser("status", parents=[common], help="is the broker running? (exit 3 if not)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=_status)
