"""The backlog benchmark (``python -m bench backlog``): its input is the worker's, and it runs end to end.

Two tests: the input builder alone (pure, no broker: the replay is what the domain code makes of a
year of dossiers), and one tiny run through the real portal sync, the broker and the portal
simulator, checking that the report carries every figure. Nothing asserts a speed.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from bench.backlog import BacklogSpec, build_backlog, expected_body
from hub.simulators.portal import _stats_problems
from schemas.calendar import TZ
from schemas.figures import OutboxDossier, UnitFigures

NOW = datetime(2026, 6, 15, 10, 0, tzinfo=TZ)


def test_the_replay_is_the_workers_output_of_a_year_of_dossiers():
    spec = BacklogSpec(units=4, dossiers=400, months=12, updates=5)
    backlog = build_backlog(spec, NOW)

    assert len(backlog.steps) == 5
    assert len(backlog.final_versions) == 400
    assert len(backlog.units) == 4
    items = [OutboxDossier.model_validate_json(v) for s in backlog.steps for _, v in s.outbox]
    assert len(items) == backlog.outbox_items
    assert {i.ma_ho_so for i in items} == set(backlog.final_versions)
    # Versions arrive in order and a dossier's newest item is the state the portal must end with.
    newest: dict[str, OutboxDossier] = {}
    for item in items:
        assert item.version > newest[item.ma_ho_so].version if item.ma_ho_so in newest else item.version == 1
        newest[item.ma_ho_so] = item
    assert {ma: (i.dossier["NgayCapNhat"], i.dossier["TrangThaiHoSo"]) for ma, i in newest.items()} == \
        backlog.final_versions
    # Every step rewrites partials (the worker catching up), and the merged counts grow step by step.
    assert all(step.partials for step in backlog.steps)
    latest: dict[bytes, UnitFigures] = {}
    received = []
    for step in backlog.steps:
        for key, value in step.partials:
            latest[key] = UnitFigures.model_validate_json(value)
        received.append(sum(n for fig in latest.values() for key, n in fig.counts.items()
                            if key.startswith("received|") and "-Q" in key.split("|")[3]))
    assert received == sorted(received), received
    assert received[0] < received[-1], received
    # Every dossier was received once: the final figures count each once per quarter it was received in.
    total = sum(n for c in backlog.final_counts.values() for key, n in c.items()
                if key.startswith("received|") and key.split("|")[3].count("-Q"))
    assert total == 400
    # Open dossiers carry "open at the period's end" into every month up to now: many periods per unit.
    periods = backlog.periods_with_figures()
    assert all(len(p) >= 12 + 4 + 1 for p in periods.values()), {u: len(p) for u, p in periods.items()}
    # The bodies the statistics must converge to are ones the portal accepts.
    for unit in backlog.units:
        for ky in ("2026-06", "2026-Q2", "2026", "2025-12"):
            body = expected_body(backlog, ky, unit)
            assert body is not None
            assert _stats_problems({**body, "thoi_diem_tong_hop": NOW.isoformat()}, ky, unit) == []
    assert expected_body(backlog, "2026-06", "99999") is None


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_backlog_bench_runs_end_to_end_at_tiny_scale(kafka_broker, tmp_path):
    from bench.__main__ import main
    from bench.common import load_results

    results, out = tmp_path / "results", tmp_path / "benchmarks.md"
    assert main(["backlog", "--units", "3", "--dossiers", "150", "--months", "3", "--updates", "3",
                 "--feed-s", "2", "--quiet-s", "2", "--timeout", "150", "--bootstrap", kafka_broker.bootstrap,
                 "--results-dir", str(results), "--out", str(out)]) == 0

    r = load_results(results)["backlog"]
    assert r["input"]["dossiers_fed"] == 150
    run = r["runs"]["current"]
    assert run["converged"], run["error"]
    assert run["dossiers"]["at_newest"] == run["dossiers"]["expected"] == 150
    assert run["stats"]["mismatched_count"] == 0
    assert run["stats"]["keys"] >= run["stats"]["required_keys"] > 0
    for figure in ("dossiers_drained_s", "stats_converged_s", "last_stats_put_s"):
        assert run[figure] is not None, figure
        assert run[figure] >= 0, figure
    assert set(run["stats"]["puts_per_key"]) >= {"max", "mean", "p95"}
    assert run["stats"]["puts_per_key"]["max"] >= 1
    req = run["requests"]
    assert req["total"] >= req["stats_puts"] + req["dossier_posts"]
    assert req["stats_puts"] >= run["stats"]["keys"]
    assert req["dossier_posts"] >= 2  # 150 dossiers, at most 100 per POST
    assert "429" in req
    md = out.read_text(encoding="utf-8")
    for needle in ("## 6. A province-year backlog", "accepted PUTs per (unit, period)", "429s received",
                   "python -m bench backlog --dossiers 150 --units 3", "--baseline 4baa9b8"):
        assert needle in md, needle
    assert json.loads((results / "backlog.json").read_text())["env"]["machine"]["cores"] >= 1


def test_rendering_one_benchmark_keeps_the_sections_of_the_others(tmp_path):
    from bench.report import render

    out = tmp_path / "benchmarks.md"
    out.write_text(
        "# Benchmarks\n\n| benchmark | figure | target | |\n|---|---|---|---|\n"
        "| 5. two workers | × 1.33 of one worker | — | |\n\n## 5. Two workers against one\n\nmeasured earlier\n\n"
        "*Measured then.*\n", encoding="utf-8")
    domain = {"n": 10, "repeats": 1, "best": {"normalize_motcua": 57.6}, "units": {"normalize_motcua": "µs"}}
    text = render({"domain": domain}, out)
    assert "| 5. two workers | × 1.33 of one worker | — | |" in text
    assert "## 5. Two workers against one\n\nmeasured earlier\n\n*Measured then.*\n" in text
    assert "## Domain micro-benchmarks" in text
    assert text.index("## 5. Two workers") < text.index("## Domain")
    assert render({"domain": domain}, out) == text  # stable when rendered again
    assert "measured earlier" not in render({"domain": domain}, out, keep=False)
