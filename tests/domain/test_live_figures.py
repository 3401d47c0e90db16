"""The incremental live open/overdue figures equal the reference walk over every open dossier and period."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime

import pytest

from schemas.calendar import TZ
from schemas.events import Channel
from streams.domain.aggregates import Aggregates, _live_periods
from streams.domain.state import DossierView

BASE = int(datetime(2020, 6, 1, tzinfo=TZ).timestamp())
DAY = 86400


def reference(agg: Aggregates, unit: str, now_ts: int) -> Counter[str]:
    """What the figures were before they were incremental: every open dossier, every live period."""
    out: Counter[str] = Counter()
    for e in agg._parts[0].open.get(unit, {}).values():
        for per, ref in _live_periods(e.as_of_ts, now_ts):
            out[f"open_end|{e.lc}|{per}|"] += 1
            if e.due_ts is not None and e.due_ts < ref:
                out[f"overdue_end|{e.lc}|{per}|"] += 1
    return out


def random_view(rnd: random.Random, ma: str, version: int) -> DossierView:
    recv = BASE + rnd.randint(0, 400) * DAY + rnd.randint(0, DAY - 1)
    # as_of usually after reception, sometimes before it (bad source data), sometimes far later
    as_of = recv + rnd.choice([0, rnd.randint(0, 200) * DAY, -DAY])
    status = rnd.choice([2, 4, 5, 6, 9, 10, 3, 7])
    return DossierView(
        ma_ho_so=ma, version=version, unit_code=rnd.choice(["14767", "380"]), unit_tier="XA", procedure_code="P",
        level_raw=rnd.choice([3, 4]), channel=rnd.choice(list(Channel)), status=status, received_ts=recv,
        due_ts=rnd.choice([None, recv + rnd.randint(-5, 120) * DAY]),
        end_ts=as_of if status in (3, 7, 9, 10) else None, as_of_ts=as_of, supplement_requests=0,
        paid_online=False, digitised=False, electronic_result=False,
    )


@pytest.mark.parametrize("seed", range(8))
def test_live_figures_equal_the_reference_walk(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(25):
        agg = Aggregates()
        agg.rebuild(0, [])
        views: dict[str, DossierView | None] = {}
        for step in range(rnd.randint(1, 50)):
            ma = f"D{rnd.randint(0, 20)}"
            new = None if rnd.random() < 0.1 else random_view(rnd, ma, step)
            agg.apply_change(0, views.get(ma), new)
            views[ma] = new
            # now before, inside and long after the data; twice in the same month (the cache)
            for now_ts in (BASE + rnd.randint(-30, 700) * DAY + rnd.randint(0, DAY - 1),
                           int(datetime(2021, 4, 1, tzinfo=TZ).timestamp())):
                for unit in ("14767", "380"):
                    got: Counter[str] = Counter()
                    agg._live(agg._parts[0], unit, now_ts, got)
                    assert +got == +reference(agg, unit, now_ts)
