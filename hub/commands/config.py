"""``dvc-hub config show|check``: see the effective configuration (secrets masked), or validate it.

``check`` exits 0 only when the configuration would run: valid, and, outside ``profile = "demo"``,
every secret set and none of them a public demo value (each missing one is named with the
environment variable to set). ``show`` masks secret fields, credentials inside URLs and
secret-looking keys of connector ``options``.
"""

from __future__ import annotations

import argparse
import json
import sys

from hub.config import DEMO_NOTICE, config_origin, load_settings, redacted_dump


def _show(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    print(json.dumps(redacted_dump(settings), indent=2, ensure_ascii=False))
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    origin = config_origin(args.config)
    problems = settings.secret_problems()
    if problems:
        print(f"dvc-hub: configuration {origin} is valid but cannot run: {len(problems)} secret(s) missing or "
              "public (secrets have no default outside profile = \"demo\"):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        print("Set them in the environment (never in the file).", file=sys.stderr)
        return 1
    kinds: dict[str, int] = {}
    for c in settings.connectors:
        kinds[c.type] = kinds.get(c.type, 0) + 1
    summary = ", ".join(f"{n} {t}" for t, n in sorted(kinds.items()))
    print(f"configuration ok: {settings.city_name}; connectors: {summary}; kafka {settings.kafka.bootstrap_servers}")
    if settings.profile == "demo":
        print(f"note: {DEMO_NOTICE}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config show`` and ``config check``."""
    parser = subparsers.add_parser("config", help="show or check the effective configuration")
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    sub.add_parser("show", help="print the effective configuration as JSON, secrets masked").set_defaults(
        func=_show
    )
    sub.add_parser(
        "check", help="validate the configuration and its secrets (non-zero if it cannot run)"
    ).set_defaults(func=_check)
