"""Fixtures of the reliability suite: a full hub per test on the session's real broker.

``hub_factory(**kw)`` builds a :class:`tests.reliability.harness.HubUnderTest` in the test's
temporary directory (free ports, unique topics) and closes it after the test; ``kw`` are the
harness's options (``scale``, ``workers``, ``source_faults``, ``portal_faults``...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.broker import EmbeddedBroker
from tests.reliability.harness import HubUnderTest

#: The fast subset's volume (≈450 dossiers, ≈3,500 changes): seconds to play, every trap present.
FAST_SCALE = 0.02
#: The soak's volume.
SOAK_SCALE = 0.05

HubFactory = Callable[..., HubUnderTest]


@pytest.fixture
def hub_factory(tmp_path: Path, kafka_broker: EmbeddedBroker) -> Iterator[HubFactory]:
    made: list[HubUnderTest] = []

    def make(bootstrap: str | None = None, **kw: Any) -> HubUnderTest:
        kw.setdefault("scale", FAST_SCALE)
        hub = HubUnderTest(tmp_path / f"hub{len(made)}", bootstrap or kafka_broker.bootstrap, **kw)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        hub.close()
