"""Scenarios built once per test session (the full one takes a few seconds)."""

from __future__ import annotations

import pytest

from hub.scenario.thanhhoa2021 import build_scenario
from hub.scenario.truth import GroundTruth


@pytest.fixture(scope="session")
def full_scenario():
    return build_scenario(seed=2021, scale=1.0)


@pytest.fixture(scope="session")
def full_truth(full_scenario):
    return GroundTruth(full_scenario)


@pytest.fixture(scope="session")
def small_scenario():
    return build_scenario(seed=5, scale=0.03)
