"""``python -m hub.scenario [seed] [scale]``: build thanhhoa-2021 and print its sizes and headline figures."""

from __future__ import annotations

import json
import sys
import time

from hub.scenario.thanhhoa2021 import build_scenario
from hub.scenario.truth import GroundTruth


def main(argv: list[str]) -> int:
    """Build, recount, print; exit status 1 if the recount misses the targets."""
    seed = int(argv[0]) if argv else 2021
    scale = float(argv[1]) if len(argv) > 1 else 1.0
    cpu = time.process_time()
    scenario = build_scenario(seed=seed, scale=scale)
    sys.stdout.write(f"{scenario.summary()} ({time.process_time() - cpu:.2f} s CPU)\n")
    sys.stdout.write(json.dumps(scenario.counts()) + "\n")
    headline = GroundTruth(scenario).headline()
    sys.stdout.write(json.dumps(headline, ensure_ascii=False) + "\n")
    return 0 if headline == scenario.targets else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
