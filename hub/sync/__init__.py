"""Portal sync: push dossiers, progress and statistics back to the provincial portal, exactly once in effect.

The pieces, each in its own module (authentication is the hub's one auth module,
:mod:`connectors.sdk.auth`, shared with the portal source connector):

- :mod:`hub.sync.client` — one HTTP exchange with the portal, classified into a typed outcome;
- :mod:`hub.sync.delivery` — backoff with jitter honouring ``Retry-After``, circuit breaker, the rate limit
  both lanes share (dossiers first);
- :mod:`hub.sync.outbox` — outbox records, dedupe, sync state and idempotency keys;
- :mod:`hub.sync.stats` — the statistics lane: bodies from the figure partials, coalesced per (period, unit),
  pushed when quiet or at most once per min interval;
- :mod:`hub.sync.service` — the consumer-group service (``dvc-hub push run``);
- :mod:`hub.sync.api` — the read API the portal calls, ``/metrics`` and ``/openapi.json``.

``docs/portal-sync.md`` explains the flow and why the guarantees hold.
"""
