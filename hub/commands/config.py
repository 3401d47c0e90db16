"""``dvc-hub config show|check``: see the effective configuration, secrets masked."""

from __future__ import annotations

import argparse
import json

from hub.config import load_settings, redacted_dump


def _show(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    print(json.dumps(redacted_dump(settings), indent=2, ensure_ascii=False))
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    kinds: dict[str, int] = {}
    for c in settings.connectors:
        kinds[c.type] = kinds.get(c.type, 0) + 1
    summary = ", ".join(f"{n} {t}" for t, n in sorted(kinds.items()))
    print(f"configuration ok: {settings.city_name}; connectors: {summary}; kafka {settings.kafka.bootstrap_servers}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config show`` and ``config check``."""
    parser = subparsers.add_parser("config", help="show or check the effective configuration")
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    sub.add_parser("show", help="print the effective configuration as JSON, secrets masked").set_defaults(
        func=_show
    )
    sub.add_parser("check", help="validate the configuration and summarise it").set_defaults(func=_check)
