"""The one guard every faust callback of the worker runs under: an escaped exception exits the worker.

faust (and mode under it) treats an exception in a callback in several ways, none of them "stop":
an agent body that raises is restarted by its supervisor (and the message it held is skipped,
faust issues #604, #527); a table's recovery callback that raises ends the recovery service but
not the worker, which then answers ``/healthz`` with 503 forever and publishes nothing; a web view
that raises answers 500 on every request. The process stays up, so its supervisor never restarts
it: a zombie. That is how one dossier dated in year 9999 once kept a worker from ever getting
ready.

The hub's own per-record handlers never raise (a bad record is a dead letter), so anything that
reaches a callback's edge is something the hub cannot handle per record. :func:`exit_on_error`
wraps each callback (agent bodies, timers, tasks, the recovery hook, signal receivers, web views):
an exception is logged with its type and its frames only (a message can quote input, so it goes
through :func:`hub.privacy.redact_text` with quoted values masked), then the app is crashed with a
:class:`WorkerFailedError` and the worker process exits with a non-zero code, for ``dvc-hub up``,
systemd or Kubernetes to start it again. A restart is safe: state is rebuilt from the changelog
and replays are absorbed (:mod:`streams.app`).

Example::

    @exit_on_error(app, "timer publish_partials")
    async def publish_partials() -> None:
        ...

    app.timer(5.0)(publish_partials)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from hub.deadletter import mask_quoted
from hub.privacy import redact_text

__all__ = ["WorkerFailedError", "describe", "exit_on_error", "not_the_records_fault"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class WorkerFailedError(RuntimeError):
    """Raised into faust to stop a worker whose callback failed (see the module docstring)."""


#: Packages whose exceptions are the platform's, never a record's: a table write refused by faust
#: (``PartitionsMismatch``), a producer that stopped, a broker away.
_PLATFORM_PACKAGES = ("faust", "mode", "aiokafka", "kafka", "asyncio")


def _platform_types() -> tuple[type[BaseException], ...]:
    from aiokafka.errors import KafkaError as AioKafkaError
    from faust.exceptions import FaustError
    from kafka.errors import KafkaError

    return (FaustError, AioKafkaError, KafkaError, OSError, TimeoutError, MemoryError)


def not_the_records_fault(exc: BaseException) -> bool:
    """True when ``exc`` says nothing about the record being handled: Kafka, faust, the machine.

    The per-record handlers dead-letter what is the record's fault (it fails validation, the
    bounds, a domain rule, or trips a bug that the same record would trip again) and re-raise
    everything else, for :func:`exit_on_error` to crash the worker: its offset is not committed,
    so the record is re-delivered to the restarted worker. Dead-lettering it instead would lose
    a record that was fine (1,680 catalogue entries once, each refused by faust with
    ``PartitionsMismatch`` while the changelog topic was not in its metadata yet).

    Not the record's fault: an exception of faust, aiokafka or kafka-python, an OS or time-out
    error, or any exception raised from inside those packages (the innermost frame decides).
    """
    if isinstance(exc, _platform_types()):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", "")) if tb is not None else ""
    return module.split(".", 1)[0] in _PLATFORM_PACKAGES


def describe(what: str, exc: BaseException) -> str:
    """``<what> failed: <Type>: <message, redacted>`` — what the log and the exit reason say."""
    message = redact_text(mask_quoted(str(exc)))[:300]
    return f"{what} failed: {type(exc).__name__}" + (f": {message}" if message else "")


def exit_on_error(app: Any, what: str, *, fallback: Callable[..., Any] | None = None) -> Callable[[F], F]:
    """Decorate an async callback so that an exception escaping it crashes ``app`` (the worker exits).

    ``what`` names the callback in the log ("agent dossier_state", "table recovery hook").
    ``fallback`` computes the return value after a failure from the callback's arguments (a web
    view's 500 response); without it the wrapper returns ``None``. Cancellation is not a failure:
    faust cancels agents and timers on rebalance and shutdown, so :class:`asyncio.CancelledError`
    passes through.
    """

    def decorate(fun: F) -> F:
        @functools.wraps(fun)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fun(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the point: nothing escapes into faust unhandled
                reason = describe(what, exc)
                frames = "".join(traceback.format_tb(exc.__traceback__))
            # Outside the except block: faust's crash logs the exception being handled, whose
            # message (and its chained causes) may quote input.
            log.critical("%s; the worker exits for its supervisor to restart it. Frames:\n%s", reason, frames)
            await app.crash(WorkerFailedError(reason))
            return fallback(*args, **kwargs) if fallback is not None else None

        return cast("F", guarded)

    return decorate
