"""Smoke test of the benchmark harness: every benchmark runs at a tiny scale and yields numbers and markdown.

It keeps ``python -m bench`` from rotting. It asserts that figures come out, that the pipeline applied
every record exactly once, and that the markdown carries the machine, the versions, the targets and
the commands. It never asserts a speed: the machine is shared and timings are noise at this scale.
"""

from __future__ import annotations

import json

import pytest

from bench.__main__ import main
from bench.common import load_results

pytestmark = pytest.mark.e2e


def test_every_benchmark_runs_at_tiny_scale_and_renders(kafka_broker, tmp_path):
    results, out = tmp_path / "results", tmp_path / "benchmarks.md"
    common = ["--bootstrap", kafka_broker.bootstrap, "--results-dir", str(results), "--out", str(out),
              "--repeats", "1"]
    assert main(["throughput", "--dossiers", "40", *common]) == 0
    assert main(["memory", "--dossiers", "120", *common]) == 0
    assert main(["latency", "--rates", "40", "--duration", "2", *common]) == 0
    assert main(["domain", "--dossiers", "300", *common]) == 0

    got = load_results(results)
    assert set(got) == {"throughput", "memory", "latency", "domain"}
    tp = got["throughput"]
    assert tp["pipeline"]["applies"]["applied"] == 120  # 40 dossiers x 3 versions, each applied once
    assert tp["pipeline"]["steady_rate"] > 0
    assert tp["bare_consumer"]["median"] > 0
    assert tp["ratio"] > 0
    mem = got["memory"]
    assert mem["runs"]["memory://"]["applies"]["applied"] == 120
    assert mem["runs"]["memory://"]["rss_mib_settled"][0] > 10
    lat = got["latency"]["runs"][0]
    assert lat["created"] == 80
    assert lat["applied_within_drain"] == 80
    assert 0 < lat["p50_s"] <= lat["p99_s"]
    assert got["domain"]["best"]

    md = out.read_text(encoding="utf-8")
    for needle in ("## 1. Pipeline throughput", "## 2. End-to-end latency", "## 4. Worker memory",
                   "≥ 50 %", "python -m bench throughput --dossiers 40", "faust-streaming 0.15.3", "aiokafka",
                   "kafka-python", "cores"):
        assert needle in md, needle
    assert json.loads((results / "throughput.json").read_text())["env"]["machine"]["cores"] >= 1
