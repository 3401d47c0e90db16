"""faust never commits past records it skipped on the hub's topics (streams/offsets.py)."""

from __future__ import annotations

import logging

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from streams.offsets import refuse_gaps

TOPIC_PARTITION = TP("dvchub.raw.motcua", 1)


class FakeConsumer:
    """The state ``_add_gap`` and ``_new_offset`` read, no broker: acked 888..890 after a skip."""

    def __init__(self) -> None:
        self._acked = {TOPIC_PARTITION: [888, 889, 890]}
        self._acked_index = {TOPIC_PARTITION: {888, 889, 890}}
        self._gap = {TOPIC_PARTITION: IntervalTree()}
        self._committed_offset = {TOPIC_PARTITION: 830}


async def test_a_skipped_range_is_not_acknowledged_so_the_commit_does_not_move_past_it(caplog):
    refuse_gaps()
    c = FakeConsumer()
    with caplog.at_level(logging.WARNING, logger="streams.offsets"):
        await Consumer._add_gap(c, TOPIC_PARTITION, 831, 887)  # type: ignore[arg-type]
    assert not c._gap[TOPIC_PARTITION]
    assert "831..887 of dvchub.raw.motcua[1]" in caplog.text
    # faust's own head-of-queue check now refuses to commit: 888 is not next after 830.
    assert Consumer._new_offset(c, TOPIC_PARTITION) is None  # type: ignore[arg-type]


async def test_without_the_patch_faust_would_have_committed_past_the_range():
    """What refuse_gaps prevents, shown on faust's unpatched logic: the gap counts as acknowledged."""
    c = FakeConsumer()
    c._gap[TOPIC_PARTITION].addi(831, 888)  # what faust's _add_gap records for a jump 830 -> 888
    assert Consumer._new_offset(c, TOPIC_PARTITION) == 891  # type: ignore[arg-type]
