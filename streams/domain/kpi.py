"""Decision 766/QĐ-TTg indicators a hub can compute from the dossiers it sees (domain.md §7).

Input: one unit's (or a tier's) MERGED counts (``schemas.figures.merge_counts``) and a period;
weights and thresholds come from :class:`hub.config.Kpi766Settings` (revised nationally over time).

* 2.1 on-time processing: (finished early/on time + open and not overdue at the period's end)
  ÷ (finished + open at the period's end); score = rate × ``on_time_weight``.
* 3.0 full-online dossiers: toàn trình dossiers filed online ÷ toàn trình dossiers;
  score = weight × min(1, rate / threshold).
* 3.3 online share: dossiers received online ÷ all received; no score (reported against 50%).
* 3.6 online payment: paid online ÷ dossiers of fee-bearing procedures; weighted like 3.0.
* 4.1 electronic result: finished with an electronic result ÷ finished of paper-result procedures
  (rate capped at 1); weighted like 3.0.

A rate (and its score) is ``None`` when the denominator is 0: "no data" is not "0 %".

    >>> from collections import Counter
    >>> from hub.config import Kpi766Settings
    >>> c = Counter({"received|MOT_PHAN|TRUC_TUYEN|2021-03|": 6, "received|MOT_PHAN|TRUC_TIEP|2021-03|": 4})
    >>> ind = indicators(c, "2021-03", Kpi766Settings())
    >>> ind["3.3"].rate
    0.6
    >>> ind["2.1"].rate is None
    True
    >>> score_band(91.0)
    'Xuất sắc'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from hub.config import Kpi766Settings
from schemas.figures import split_key
from streams.domain.periods import Period, period_months

__all__ = ["INDICATOR_NAMES", "Indicator", "indicators", "metric_totals", "score_band", "total_score"]

#: Vietnamese names of the indicators (report tables).
INDICATOR_NAMES = {
    "2.1": "Giải quyết đúng hạn",
    "3.0": "Hồ sơ trực tuyến toàn trình",
    "3.3": "Tỷ lệ hồ sơ trực tuyến",
    "3.6": "Thanh toán trực tuyến",
    "4.1": "Kết quả điện tử",
}

_STOCK = frozenset({"open_end", "overdue_end"})


@dataclass(frozen=True, slots=True)
class Indicator:
    """One indicator: ``rate`` in 0..1 (None without a denominator), ``score`` in points (None if unweighted)."""

    code: str
    rate: float | None
    score: float | None
    numerator: int
    denominator: int
    max_score: float | None = None
    threshold: float | None = None


def metric_totals(
    counts: Counter[str], period: Period, *, level: str | None = None, channel: str | None = None
) -> Counter[str]:
    """Sum a unit's counts of ``period`` by metric (optionally for one level / channel).

    A month range sums its months for flows; stock figures (``open_end``, ``overdue_end``) are
    taken at the range's last month, since "open at the end" of a range is open at its last month's end.
    """
    if isinstance(period, tuple):
        months = period_months(period)
        flows, last = set(months), months[-1]
    else:
        flows, last = {period}, period
    out: Counter[str] = Counter()
    for key, n in counts.items():
        metric, lvl, ch, per, _ = split_key(key)
        if (level is not None and lvl != level) or (channel is not None and ch != channel):
            continue
        if (per == last) if metric in _STOCK else (per in flows):
            out[metric] += n
            if metric == "received":
                out[f"received|{lvl}|{ch}"] += n
    return out


def _weighted(code: str, num: int, den: int, weight: float, threshold: float, *, cap: bool = False) -> Indicator:
    if den <= 0:
        return Indicator(code, None, None, num, den, weight, threshold)
    rate = num / den
    if cap:
        rate = min(1.0, rate)
    return Indicator(code, rate, weight * min(1.0, rate / threshold), num, den, weight, threshold)


def indicators(counts: Counter[str], period: Period, settings: Kpi766Settings) -> dict[str, Indicator]:
    """The 766 indicators 2.1, 3.0, 3.3, 3.6, 4.1 of one unit (or any sum of units) for ``period``."""
    t = metric_totals(counts, period)
    ok = t["finished_early"] + t["finished_on_time"]
    finished = ok + t["finished_late"]
    open_end, overdue_end = t["open_end"], t["overdue_end"]
    den21 = finished + open_end
    num21 = ok + open_end - overdue_end
    ind21 = (
        Indicator("2.1", num21 / den21, num21 / den21 * settings.on_time_weight, num21, den21, settings.on_time_weight)
        if den21
        else Indicator("2.1", None, None, num21, den21, settings.on_time_weight)
    )
    full_den = sum(n for k, n in t.items() if k.startswith("received|TOAN_TRINH|"))
    full_num = t["received|TOAN_TRINH|TRUC_TUYEN"]
    received = t["received"]
    online = sum(n for k, n in t.items() if k.startswith("received|") and k.endswith("|TRUC_TUYEN"))
    return {
        "2.1": ind21,
        "3.0": _weighted("3.0", full_num, full_den, settings.full_online_weight, settings.full_online_threshold),
        "3.3": Indicator(
            "3.3",
            online / received if received else None,
            None,
            online,
            received,
            None,
            settings.online_share_threshold,
        ),
        "3.6": _weighted(
            "3.6",
            t["paid_online"],
            t["fee_bearing"],
            settings.online_payment_weight,
            settings.online_payment_threshold,
            cap=True,
        ),
        "4.1": _weighted(
            "4.1",
            t["electronic_result"],
            t["paper_result_procedure"],
            settings.electronic_result_weight,
            settings.electronic_result_threshold,
            cap=True,
        ),
    }


def total_score(inds: Iterable[Indicator]) -> tuple[float, float, float | None]:
    """(points, max points, percent 0..100) over the scored indicators that have data."""
    points = 0.0
    maximum = 0.0
    for i in inds:
        if i.score is not None and i.max_score is not None:
            points += i.score
            maximum += i.max_score
    return points, maximum, (100.0 * points / maximum if maximum else None)


def score_band(score: float | None) -> str:
    """Provincial band of a 0–100 score: ≥90 xuất sắc, 80–90 tốt, 70–80 khá, 50–70 trung bình, <50 yếu."""
    if score is None:
        return "Chưa có dữ liệu"
    if score >= 90:
        return "Xuất sắc"
    if score >= 80:
        return "Tốt"
    if score >= 70:
        return "Khá"
    if score >= 50:
        return "Trung bình"
    return "Yếu"
