"""``dvc-hub``: the command line of the hub.

Each command group lives in its own module under :mod:`hub.commands` and exposes
``register(subparsers)``; this module only assembles them, so adding a command never means
editing a shared switchboard.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from hub.config import ConfigError

# Order = order in `dvc-hub --help`.
COMMAND_MODULES = (
    "hub.commands.up",
    "hub.commands.broker",
    "hub.commands.simulate",
    "hub.commands.connectors",
    "hub.commands.worker",
    "hub.commands.report",
    "hub.commands.push",
    "hub.commands.dlq",
    "hub.commands.config",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group that is installed."""
    parser = argparse.ArgumentParser(
        prog="dvc-hub",
        description="DVC Hub: live figures of a city's online public services (DVCTT), from the one-stop "
        "systems, document management and the provincial portal, through Kafka, to Prometheus and back.",
    )
    parser.add_argument("--config", help="TOML configuration file (default: $DVC_HUB_CONFIG or the embedded "
                        "Thanh Hóa City defaults)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # the group is not part of this build yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dvc-hub`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One line per HTTP request (35 one-stop instances polling) or per Kafka connection drowns every
    # useful line; -v brings them back.
    for noisy in ("httpx", "httpcore", "kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except ConfigError as exc:
        print(f"dvc-hub: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
