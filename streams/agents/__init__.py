"""The worker's agents and timers, one per module, each exposing ``register(app, runtime)``.

* :mod:`streams.agents.normalizer` — one agent per raw topic (``normalize_motcua``,
  ``normalize_qlvb``, ``normalize_portal``, ``normalize_catalogue``): raw record -> canonical
  event, or a dead letter.
* :mod:`streams.agents.dossier_state` — canonical events -> the ``dossiers`` and ``catalogue``
  tables, the derived aggregates and the portal outbox.
* :mod:`streams.agents.partials` — timers: per-partition unit figures to the compacted partials
  topic, and the consumer-lag probe.

Adding an agent: write ``streams/agents/<name>.py`` with ``register(app, rt)`` that decorates an
``async def`` with ``app.agent(topic, name=..., concurrency=1)`` (always 1: faust issue #606),
catches every exception per event into :meth:`streams.app.HubRuntime.dead_letter`, wraps the
agent body (and any timer or callback) in :func:`streams.guard.exit_on_error` so that whatever
still escapes exits the worker instead of leaving it half-alive, and call it from
:func:`streams.app.create_app`. See ``docs/streams.md``.
"""
