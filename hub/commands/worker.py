"""``dvc-hub worker``: run the stream worker (normalise, keep state, count) in the foreground.

Several workers with the same ``worker.app_id`` share the partitions: start a second one with
another ``--web-port`` and Kafka rebalances. ``dvc-hub up`` starts one as a subprocess with the
same ``--config``. Stop with Ctrl-C or SIGTERM: the worker commits what it processed and leaves
the group cleanly (a SIGKILL is safe too, see ``docs/streams.md``).

Before faust starts, the worker creates the hub's topics if it may (its tables' changelogs and
faust's leader topic included) and checks every topic it uses: in the metadata, with its
partition count and leaders. A missing, invisible or mismatched topic exits with code 2 and a
message naming the topics, the partitions expected and what to do; an unreachable broker exits 1.

Example::

    dvc-hub --config city.toml worker --web-port 6067
    curl -s 127.0.0.1:6067/api/v1/status

It can also run without the rest of the CLI: ``python -m hub.commands.worker --config city.toml``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hub.config import ConfigError, Settings, load_service_settings

log = logging.getLogger(__name__)

BROKER_HINT = "start it with `dvc-hub up` or `dvc-hub broker start`, or fix kafka.bootstrap_servers"


def worker_settings(settings: Settings, web_port: int | None = None, store: str | None = None) -> Settings:
    """``settings`` with the command-line overrides applied (validated like the file)."""
    updates: dict[str, object] = {}
    if web_port is not None:
        updates["web_port"] = web_port
    if store is not None:
        updates["store"] = store
    if not updates:
        return settings
    worker = type(settings.worker).model_validate({**settings.worker.model_dump(), **updates})
    return settings.model_copy(update={"worker": worker})


#: What an operator does about topics the worker cannot create or cannot use.
TOPICS_HINT = ("create them with `dvc-hub up` (it creates every topic as the broker's admin) or, on a cluster of "
               "your own, as its admin with the partitions above (compacted: cleanup.policy=compact for the "
               "*-changelog topics); a topic with the wrong partition count must be recreated, or "
               "kafka.partitions set to the count the topics have")


def prepare_topics(settings: Settings) -> int:
    """Create the worker's topics if it may, then check them all; 0 when faust may start.

    Every topic the agents and tables use must be in the metadata with its partition count and
    its leaders *before* faust starts (``hub.kafka.check_topics``): a table whose changelog is
    missing or differently partitioned fails every write (faust's ``PartitionsMismatch``). Returns
    1 when Kafka is unreachable, 2 (with the topics, the partitions expected and what to do) when
    a topic is missing, invisible or mismatched.
    """
    from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, MetadataEmptyBrokerList

    from hub.kafka import check_topics, ensure_topics, hub_topics, worker_topics

    unreachable = (KafkaConnectionError, KafkaTimeoutError, MetadataEmptyBrokerList)
    try:
        created = ensure_topics(settings.kafka, hub_topics(settings))
    except unreachable as exc:
        print(f"dvc-hub worker: Kafka at {settings.kafka.bootstrap_servers} is unreachable ({exc}); {BROKER_HINT}",
              file=sys.stderr)
        return 1
    except (KafkaError, ConfigError) as exc:
        # A worker on a cluster it does not administer may not create topics: fine if they exist.
        log.warning("cannot create the hub's topics (%s: %s); checking that they exist", type(exc).__name__, exc)
    else:
        if created:
            log.info("created topics: %s", ", ".join(created))
    try:
        problems = check_topics(settings.kafka, worker_topics(settings), timeout_s=settings.worker.topics_timeout_s)
    except unreachable as exc:
        print(f"dvc-hub worker: Kafka at {settings.kafka.bootstrap_servers} is unreachable ({exc}); {BROKER_HINT}",
              file=sys.stderr)
        return 1
    if problems:
        lines = "\n".join(f"  - {p.describe()}" for p in problems)
        print(f"dvc-hub worker: {len(problems)} topic(s) the worker needs are not ready, so it does not start "
              f"(a table whose changelog is missing or mismatched would refuse every write):\n{lines}\n"
              f"Fix: {TOPICS_HINT}.", file=sys.stderr)
        return 2
    return 0


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    """Make sure the topics exist and are right (:func:`prepare_topics`), then run faust until SIGTERM/Ctrl-C."""
    code = prepare_topics(settings)
    if code:
        return code

    import faust

    from streams.app import create_app, runtime_of

    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, redirect_stdouts=False)
    result: object = 0
    try:
        worker.execute_from_commandline()  # installs SIGTERM/SIGINT handlers; stops cleanly
    except SystemExit as exc:
        result = exc.code
    finally:
        runtime_of(app).close()
    return result if isinstance(result, int) else 0 if result is None else 1


def _run(args: argparse.Namespace) -> int:
    settings = worker_settings(load_service_settings(args.config, "worker"), args.web_port, args.store)
    return run_worker(settings, "debug" if getattr(args, "verbose", False) else "info")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dvc-hub worker``."""
    p = subparsers.add_parser(
        "worker", help="run the stream worker (normalise, keep dossier state, count) in the foreground",
        description="Run the faust stream worker. Workers with the same worker.app_id share the partitions.",
    )
    p.add_argument("--web-port", type=int, help="port of the worker's loopback web server "
                   "(/metrics, /api/v1/status, /api/v1/figures); default worker.web_port")
    p.add_argument("--store", choices=("memory://", "rocksdb://"),
                   help="table store; memory:// rebuilds from the changelog on start, rocksdb:// needs rocksdict")
    p.set_defaults(func=_run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hub.commands.worker [--config PATH] [--web-port N] [--store URL]``."""
    parser = argparse.ArgumentParser(prog="python -m hub.commands.worker")
    parser.add_argument("--config")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--web-port", type=int)
    parser.add_argument("--store", choices=("memory://", "rocksdb://"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except ConfigError as exc:
        print(f"dvc-hub: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
