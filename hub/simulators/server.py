"""Run the three simulator apps on loopback ports, in a background thread or in the current loop.

    >>> from hub.simulators.server import SimulatorServer
    >>> with SimulatorServer(units={"14767": "key"}) as sims:       # doctest: +SKIP
    ...     sims.motcua_base_url("14767")
    'http://127.0.0.1:40123/donvi/14767'

Ports 0 (the default) pick free ports, so parallel tests never collide; ``dvc-hub simulate`` passes
the fixed demo ports. The thread owns its own event loop, so a synchronous test or the scenario
player can write the :class:`~hub.simulators.world.World` while the apps serve it. In an async test,
``await server.astart()`` / ``await server.astop()`` run the apps in the test's own loop instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType

from aiohttp import web

from hub.simulators.clock import SimClock
from hub.simulators.faults import Faults
from hub.simulators.motcua import make_motcua_app
from hub.simulators.portal import make_portal_app, revoke_all_tokens
from hub.simulators.qlvb import make_qlvb_app
from hub.simulators.units import (
    DEMO_PORTAL_CLIENTS,
    DEMO_QLVB_PASSWORD,
    DEMO_QLVB_USERNAME,
    demo_api_keys,
    load_units,
)
from hub.simulators.world import World

__all__ = ["SimulatorServer"]

log = logging.getLogger(__name__)

_FALLBACK_UNITS = ("380", "14767")


class SimulatorServer:
    """The one-stop, QLVB and portal simulators over one shared World.

    ``units`` maps unit code -> API key (default: every unit of the registry with the demo keys).
    Each app gets its own :class:`Faults` (default: all off, seeds ``seed``, ``seed+1``, ``seed+2``),
    reachable as :attr:`motcua_faults`, :attr:`qlvb_faults`, :attr:`portal_faults` and through each
    app's ``/_sim/faults`` endpoint.
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        units: dict[str, str] | None = None,
        motcua_faults: Faults | None = None,
        qlvb_faults: Faults | None = None,
        portal_faults: Faults | None = None,
        host: str = "127.0.0.1",
        motcua_port: int = 0,
        qlvb_port: int = 0,
        portal_port: int = 0,
        qlvb_username: str = DEMO_QLVB_USERNAME,
        qlvb_password: str = DEMO_QLVB_PASSWORD,
        portal_clients: dict[str, str] | None = None,
        token_ttl: int = 3600,
        require_id_number: bool = False,
        portal_rate_limit_per_s: float = 20.0,
        seed: int = 0,
        shutdown_timeout: float = 1.0,
        portal_clock: SimClock | None = None,
    ) -> None:
        self.world = world if world is not None else World(SimClock.live(), seed)
        self.units = dict(units) if units is not None else _default_units()
        self.motcua_faults = motcua_faults if motcua_faults is not None else Faults(seed=seed)
        self.qlvb_faults = qlvb_faults if qlvb_faults is not None else Faults(seed=seed + 1)
        self.portal_faults = portal_faults if portal_faults is not None else Faults(seed=seed + 2)
        self.host = host
        self._ports = {"motcua": motcua_port, "qlvb": qlvb_port, "portal": portal_port}
        self.qlvb_username = qlvb_username
        self.qlvb_password = qlvb_password
        self.portal_clients = dict(portal_clients if portal_clients is not None else DEMO_PORTAL_CLIENTS)
        self.motcua_app = make_motcua_app(self.world, self.motcua_faults, self.units)
        self.qlvb_app = make_qlvb_app(self.world, self.qlvb_faults, qlvb_username, qlvb_password)
        self.portal_app = make_portal_app(
            self.world, self.portal_faults, self.portal_clients, token_ttl, require_id_number,
            rate_limit_per_s=portal_rate_limit_per_s, clock=portal_clock,
        )
        self._shutdown_timeout = shutdown_timeout
        self._runners: list[web.AppRunner] = []
        self._bound: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ URLs

    def _port(self, name: str) -> int:
        if name not in self._bound:
            raise RuntimeError("the simulators are not running; call start() (or astart()) first")
        return self._bound[name]

    @property
    def motcua_url(self) -> str:
        """Root of the one-stop app (instances live under ``/donvi/<code>``)."""
        return f"http://{self.host}:{self._port('motcua')}"

    def motcua_base_url(self, unit: str) -> str:
        """Base URL of one unit's one-stop instance, e.g. ``http://127.0.0.1:8101/donvi/14767``."""
        return f"{self.motcua_url}/donvi/{unit}"

    @property
    def qlvb_url(self) -> str:
        """Base URL of QLVB; the feed is ``<qlvb_url>/qlvb/api/sukien``."""
        return f"http://{self.host}:{self._port('qlvb')}"

    @property
    def portal_url(self) -> str:
        """Base URL of the portal (``/oauth2/token``, ``/api/v1/...``)."""
        return f"http://{self.host}:{self._port('portal')}"

    def revoke_portal_tokens(self) -> int:
        """Revoke every portal token now (the on-demand revocation)."""
        return revoke_all_tokens(self.portal_app)

    # ------------------------------------------------------------------ async lifecycle

    async def astart(self) -> None:
        """Serve the three apps in the running event loop."""
        if self._runners:
            raise RuntimeError("already started")
        apps = {"motcua": self.motcua_app, "qlvb": self.qlvb_app, "portal": self.portal_app}
        try:
            for name, app in apps.items():
                runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._shutdown_timeout)
                await runner.setup()
                self._runners.append(runner)
                site = web.TCPSite(runner, self.host, self._ports[name])
                await site.start()
                self._bound[name] = int(runner.addresses[0][1])
        except BaseException:
            await self.astop()
            raise

    async def astop(self) -> None:
        """Stop serving (open connections are closed after ``shutdown_timeout``)."""
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()
        self._bound.clear()

    # ------------------------------------------------------------------ thread lifecycle

    def start(self) -> None:
        """Serve the apps from a background thread with its own loop; returns once they listen."""
        if self._thread is not None:
            raise RuntimeError("already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="dvc-hub-simulators", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            asyncio.run_coroutine_threadsafe(self.astart(), loop).result(timeout=30)
        except BaseException:
            self.stop()
            raise
        log.info("simulators listening: one-stop %s, QLVB %s, portal %s",
                 self.motcua_url, self.qlvb_url, self.portal_url)

    def stop(self) -> None:
        """Stop the apps and the background thread (safe to call twice)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.astop(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            self._loop = self._thread = None

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SimulatorServer:
        await self.astart()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()


def _default_units() -> dict[str, str]:
    try:
        codes = [unit.code for unit in load_units()]
    except FileNotFoundError as exc:
        log.warning("%s; serving only units %s", exc, ", ".join(_FALLBACK_UNITS))
        codes = list(_FALLBACK_UNITS)
    return demo_api_keys(codes)
