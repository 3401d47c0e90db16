"""``dvc-hub simulate``: the three simulated source systems plus live activity, in the foreground.

    dvc-hub simulate                              # demo ports 8101/8102/8103, no faults
    dvc-hub simulate --faults all_on,seed=3       # every trap at a moderate rate
    dvc-hub simulate --faults p_5xx=0.2 --rate 2  # a flaky portal... and one-stop and QLVB

The default ports, API keys and passwords match ``hub/defaults/thanhhoa-city.toml``, so the hub's
default configuration reads these simulators as they are. Faults can also be changed while it runs:
``curl -X POST <url>/_sim/faults -d '{"p_429": 0.2}'``. See docs/simulators.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from hub.simulators.clock import SimClock
from hub.simulators.faults import Faults
from hub.simulators.live import LiveGenerator
from hub.simulators.server import SimulatorServer
from hub.simulators.units import (
    DEMO_PORTAL_CLIENTS,
    DEMO_QLVB_PASSWORD,
    DEMO_QLVB_USERNAME,
    demo_api_keys,
    load_units,
)
from hub.simulators.world import World

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``simulate`` command to ``dvc-hub``'s sub-parsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="run the one-stop, QLVB and portal simulators with live activity (until Ctrl-C)",
        description="Serve simulated one-stop systems (one per unit), the QLVB document feed and the "
        "provincial portal on loopback, following the contracts, traps included, while a generator "
        "files and processes dossiers in real time.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--motcua-port", type=int, default=8101, help="one-stop systems (default 8101; 0 = any)")
    parser.add_argument("--qlvb-port", type=int, default=8102, help="QLVB (default 8102; 0 = any)")
    parser.add_argument("--portal-port", type=int, default=8103, help="provincial portal (default 8103; 0 = any)")
    parser.add_argument("--rate", type=float, default=0.5, help="new dossiers per second (default 0.5; 0 = none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and faults (default 0)")
    parser.add_argument("--faults", default="", metavar="SPEC",
                        help='fault switches for all three systems, e.g. "all_on" or "p_5xx=0.1,p_429=0.05" '
                        f"(known: {', '.join(Faults.field_names())})")
    parser.add_argument("--units-csv", type=Path, default=None,
                        help="unit registry CSV (default: schemas/reference/units-thanhhoa-city-2021.csv)")
    parser.set_defaults(func=run)


def _faults(spec: str, seed: int) -> Faults:
    """One Faults per app, each with its own seed so their random draws do not interfere."""
    faults = Faults.from_spec(spec) if spec else Faults()
    if "seed=" not in spec:
        faults.update({"seed": seed})
    return faults


def run(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code."""
    try:
        faults = [_faults(args.faults, args.seed + i) for i in range(3)]
        units = load_units(args.units_csv)
    except (ValueError, FileNotFoundError) as exc:
        print(f"dvc-hub simulate: {exc}", file=sys.stderr)
        return 2
    # A running demo keeps only the recent request log: it exists for tests, not for operators.
    world = World(SimClock.live(), seed=args.seed, request_log_size=2000)
    server = SimulatorServer(
        world,
        units=demo_api_keys(u.code for u in units),
        motcua_faults=faults[0],
        qlvb_faults=faults[1],
        portal_faults=faults[2],
        host=args.host,
        motcua_port=args.motcua_port,
        qlvb_port=args.qlvb_port,
        portal_port=args.portal_port,
    )
    generator = LiveGenerator(world, args.rate, args.seed, units=[u.code for u in units], faults=faults[0])
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
    except OSError as exc:
        print(f"dvc-hub simulate: cannot listen ({exc}); choose other ports with --motcua-port/--qlvb-port/"
              "--portal-port", file=sys.stderr)
        return 1
    try:
        print(f"one-stop  {server.motcua_url}/donvi/<ma_don_vi>  ({len(units)} units, X-Api-Key demo-key-<ma_don_vi>)")
        print(f"qlvb      {server.qlvb_url}/qlvb/api/sukien  (Basic {DEMO_QLVB_USERNAME}:{DEMO_QLVB_PASSWORD})")
        client = next(iter(DEMO_PORTAL_CLIENTS))
        print(f"portal    {server.portal_url}  (OAuth2 client {client}, secret {DEMO_PORTAL_CLIENTS[client]})")
        print(f"control   <url>/_sim/faults, <url>/_sim/stats  (faults: {args.faults or 'off'}; Ctrl-C stops)")
        sys.stdout.flush()
        generator.run_forever(stop)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"stopped: {generator.created} dossiers filed, {generator.changes} changes", file=sys.stderr)
    return 0
