"""Simulators of the systems the hub reads and writes: one-stop systems, QLVB, provincial portal.

They follow ``contracts.md`` to the letter, traps included, with every fault switchable and seeded.
Start here: :class:`SimulatorServer` (the three apps on loopback), :class:`World` (the ground truth
a scenario writes and a test compares against), :class:`Faults` and :class:`SimClock`. How to run
them and every switch: ``docs/simulators.md``.
"""

from hub.simulators.clock import TZ, SimClock
from hub.simulators.faults import Faults
from hub.simulators.live import LiveGenerator
from hub.simulators.server import SimulatorServer
from hub.simulators.world import World

__all__ = ["TZ", "Faults", "LiveGenerator", "SimClock", "SimulatorServer", "World"]
