"""Seeded scenarios that drive the simulators, and the independent ground truth that checks the hub.

- :func:`hub.scenario.thanhhoa2021.build_scenario` — Thanh Hóa City, 2020-01 .. 2021-03, reproducing
  domain.md §6 exactly (docs/scenario.md).
- :class:`hub.scenario.player.ScenarioPlayer` — feeds a scenario into a ``World`` through source time.
- :class:`hub.scenario.truth.GroundTruth` — final snapshots, every version, recounted figures.

    >>> from hub.scenario import GroundTruth, build_scenario
    >>> GroundTruth(build_scenario(scale=0.01)).headline()["dien_bien_2020_09_2021_03"]
    7
"""

from hub.scenario.generator import Lifecycle, Scenario, Version
from hub.scenario.player import ScenarioPlayer
from hub.scenario.thanhhoa2021 import build_scenario, expected_targets
from hub.scenario.truth import GroundTruth, PersonalData

__all__ = [
    "GroundTruth",
    "Lifecycle",
    "PersonalData",
    "Scenario",
    "ScenarioPlayer",
    "Version",
    "build_scenario",
    "expected_targets",
]
