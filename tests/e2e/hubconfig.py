"""Write a hub configuration for a test: the embedded defaults, moved onto free ports and fresh topics.

Everything a test run binds is a free loopback port and every topic name carries a unique prefix,
so end-to-end tests never collide with each other or with a demo running on the default ports.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from hub.broker import free_port
from hub.config import DEFAULTS_FILE, TopicSettings


@dataclass(frozen=True)
class HubPorts:
    """The ports a test hub listens on."""

    motcua: int
    qlvb: int
    portal: int
    worker: int
    connectors: int
    portal_sync: int
    prometheus: int


def write_hub_config(
    tmp_path: Path, bootstrap: str | None, *, partitions: int = 4, extra: str = "", poll_interval_s: float = 0.5
) -> tuple[Path, HubPorts, str]:
    """A TOML file for a hub on ``bootstrap``; returns (path, ports, topic prefix).

    ``bootstrap=None``: the hub's own embedded broker (secured, as in a demo) on free ports, its data
    in ``tmp_path/kafka``; ``dvc-hub up`` starts it. Otherwise the embedded broker is off.
    """
    ports = HubPorts(*(free_port() for _ in range(7)))
    embedded = bootstrap is None
    if bootstrap is None:
        broker_port, controller_port = free_port(), free_port()
        bootstrap = f"127.0.0.1:{broker_port}"
    prefix = f"t{uuid.uuid4().hex[:8]}"
    text = DEFAULTS_FILE.read_text(encoding="utf-8")
    for old, new in (
        ("127.0.0.1:8101", f"127.0.0.1:{ports.motcua}"),
        ("127.0.0.1:8102", f"127.0.0.1:{ports.qlvb}"),
        ("127.0.0.1:8103", f"127.0.0.1:{ports.portal}"),
        ("motcua_port = 8101", f"motcua_port = {ports.motcua}"),
        ("qlvb_port = 8102", f"qlvb_port = {ports.qlvb}"),
        ("portal_port = 8103", f"portal_port = {ports.portal}"),
        ('bootstrap_servers = "127.0.0.1:9092"', f'bootstrap_servers = "{bootstrap}"'),
        ("partitions = 4", f"partitions = {partitions}"),
        ("enabled = true\ndata_dir = \".dvc-hub/kafka\"",
         f"enabled = {'true' if embedded else 'false'}\ndata_dir = \"{tmp_path / 'kafka'}\""),
        ('app_id = "dvc-hub"', f'app_id = "dvc-hub-{prefix}"'),
        ('data_dir = ".dvc-hub/worker"', f'data_dir = "{tmp_path / "worker"}"'),
        ("web_port = 6066", f"web_port = {ports.worker}\npartials_interval_s = 1.0"),
        ("port = 9465", f"port = {ports.connectors}"),
        ("port = 9466", f"port = {ports.portal_sync}"),
        ("port = 9090", f"port = {ports.prometheus}"),
        ("poll_interval_s = 5.0", f"poll_interval_s = {poll_interval_s}"),
    ):
        assert old in text, f"the defaults file changed: {old!r} not found"
        text = text.replace(old, new)
    if embedded:
        for old, new in (("port = 9092\n", f"port = {broker_port}\n"),
                         ("controller_port = 9093", f"controller_port = {controller_port}")):
            assert old in text, f"the defaults file changed: {old!r} not found"
            text = text.replace(old, new, 1)
    topics = "\n".join(f'{name} = "{prefix}.{default}"' for name, default in TopicSettings().model_dump().items())
    text = text.replace("[prometheus]", f'[prometheus]\ndata_dir = "{tmp_path / "prometheus"}"', 1)
    text += f"\n[topics]\n{topics}\n{extra}\n"
    path = tmp_path / "hub.toml"
    path.write_text(text, encoding="utf-8")
    return path, ports, prefix
