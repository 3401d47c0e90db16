"""The domain core's micro-benchmark (``python -m tests.domain.bench_domain N``), run and captured.

It times the pure functions the worker calls per event (normalise, apply + aggregate, a replay) and
the size of a dossier's state, with no Kafka and no faust: the floor under the pipeline's cost per
record. Repeated ``repeats`` times; the best run is kept (the fastest is the least disturbed).
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

from bench.common import ROOT

_LINE = re.compile(r"^(?P<label>.+?)\s{2,}(?P<value>[0-9.]+) (?P<unit>[^\s]+)", re.MULTILINE)


def domain(n: int = 20_000, repeats: int = 3) -> dict[str, Any]:
    """Run the micro-benchmark ``repeats`` times on ``n`` records; per figure the best run."""
    runs: list[dict[str, float]] = []
    outputs: list[str] = []
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-m", "tests.domain.bench_domain", str(n)], cwd=ROOT, capture_output=True,
            text=True, check=True, timeout=600,
        )
        outputs.append(proc.stdout)
        runs.append({m.group("label").strip(): float(m.group("value")) for m in _LINE.finditer(proc.stdout)})
    labels = list(runs[0])
    best = {label: min(r[label] for r in runs if label in r) for label in labels}
    units = {m.group("label").strip(): m.group("unit") for m in _LINE.finditer(outputs[0])}
    return {"benchmark": "domain", "n": n, "repeats": repeats, "best": best, "units": units, "last_output": outputs[-1]}
