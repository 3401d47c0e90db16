"""The domain core of the streams: pure Python, no Kafka, no faust.

* :mod:`streams.domain.state` — per-dossier state, applied idempotently and commutatively;
* :mod:`streams.domain.aggregates` — counters derived from state, the procedure catalogue;
* :mod:`streams.domain.kpi` — Decision 766 indicators;
* :mod:`streams.domain.report` — the published report, the portal's statistics body;
* :mod:`streams.domain.periods` — reporting periods.

The rules are written down in ``docs/domain-model.md``.
"""
