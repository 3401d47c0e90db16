"""Never commit past a record the worker did not process: faust's "gap" acknowledgement turned off.

faust's consumer (``faust/transport/consumer.py``) watches the offsets it fetches per partition. When
one jumps forward past the last it read, it records the skipped range as a *gap* (``_add_gap``), and
``_new_offset`` later counts the gap as acknowledged, so the committed offset moves past it. That is
meant for compacted and transactional topics, where offsets really have holes. The hub's agents read
neither kind: its raw and canonical topics are plain, and every producer is idempotent and
non-transactional, so their offsets have no holes. A jump there means faust skipped records, for
example around the "Seek stream partitions to committed offsets" of a recovery, and counting them as
acknowledged loses them for good.

A soak run (``make soak``, ten SIGKILLs of the worker) showed exactly that kind of loss. Forensics
on its broker found that ``raw.motcua`` partition 1, offsets 831–887, were committed but never
normalised, with no dead letter. Every check downstream of that point agreed.

With :func:`refuse_gaps` installed, a skipped range stays unacknowledged. faust then does not commit
past it (its head-of-queue check), the partition's committed offset stands still while records
wait, and the stall watchdog (:mod:`streams.watchdog`) restarts the worker. The restarted worker
reads the range again from the committed offset, and the idempotent state absorbs what it had
already seen. A loss becomes a restart, and the warning below names the range.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_installed = False


async def _refuse_gap(_self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    # Replaces faust.transport.consumer.Consumer._add_gap (same signature): log, do not acknowledge.
    log.warning(
        "skipped offsets %d..%d of %s[%d] were fetched past, not processed; they are not committed "
        "(the stall watchdog restarts the worker to read them again)", offset_from, offset_to, tp.topic,
        tp.partition,
    )


def refuse_gaps() -> None:
    """Install the replacement on faust's consumer class (idempotent; process-wide, as faust's class is)."""
    global _installed
    if _installed:
        return
    from faust.transport.consumer import Consumer

    Consumer._add_gap = _refuse_gap  # type: ignore[method-assign,assignment]
    _installed = True
