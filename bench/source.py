"""The source side of the latency benchmark, in its own process: simulators, a World on the live clock, a driver.

``python -m bench.source --port P --units 380,14767 --rate 1000 --duration 30 --go GO --out OUT``

serves the one-stop simulator for the given units on ``P``, waits until the file ``GO`` exists (the
pipeline is up), then creates new dossiers at ``rate`` per second for ``duration`` seconds, spread
round-robin over the units, recording the wall-clock time (``time.time()``) of each creation, and
writes them to ``OUT`` as JSON. Running apart from the benchmark keeps the driver's and the HTTP
server's CPU out of the measuring process's GIL.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.records import snapshot
from hub.simulators import SimClock, SimulatorServer, World
from hub.simulators.units import demo_api_keys


def drive(world: World, units: list[str], rate: float, duration: float) -> list[float]:
    """Create ``rate`` dossiers per second for ``duration`` s; returns each creation's wall time."""
    created: list[float] = []
    n = int(rate * duration)
    t0 = time.perf_counter()
    wall0 = time.time()
    for k in range(n):
        due = t0 + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        snap = snapshot(k, 1, 10, units, prefix="H56L")
        del snap["PhienBan"], snap["NgayCapNhat"]
        world.upsert_dossier(snap)
        created.append(wall0 + (time.perf_counter() - t0))
    return created


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.source")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--units", required=True)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--go", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    units = args.units.split(",")
    world = World(SimClock.live(), seed=1)
    server = SimulatorServer(world, units=demo_api_keys(units), motcua_port=args.port, qlvb_port=0, portal_port=0)
    server.start()
    try:
        while not args.go.exists():
            time.sleep(0.05)
        created = drive(world, units, args.rate, args.duration)
        args.out.write_text(json.dumps(created), encoding="utf-8")
        # Keep serving: the connectors still have to read the last changes.
        while args.go.exists():
            time.sleep(0.1)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
