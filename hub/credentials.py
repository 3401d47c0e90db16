"""Per-installation secrets of the hub: the embedded broker's SCRAM users and the outbox signing key.

Both are generated on first use with :mod:`secrets` and kept in the embedded broker's data
directory (``embedded.data_dir``, ``.dvc-hub/kafka`` by default), which is made ``0700``; each
file is created ``0600`` with ``O_EXCL``, so two processes starting at once agree on one value
(the loser of the race reads the winner's file) and no other user of the machine can read it::

    <data_dir>/credentials.json    {"users": {"admin": {"username": ..., "password": ...}, ...}}
    <data_dir>/outbox-signing.key  64 hex characters: the HMAC key of the portal outbox

Every hub process finds them there when it runs against the embedded broker (see
:meth:`hub.config.KafkaSettings.for_part`); against an external cluster the same values come from
the settings (``kafka.sasl_*``, ``kafka.users``, ``kafka.outbox_signing_key``), usually through
environment variables.

The principals (:data:`PARTS`) are one per part of the hub, so that the broker's ACLs can let
each part write only its own topics (:func:`hub.kafka.hub_acls`)::

    admin        the super user: creates topics and ACLs (``dvc-hub up``, ``broker start``)
    connectors   raw topics, connector state, dead letters
    worker       canonical events, partials, outbox, its faust changelogs, dead letters
    portal-sync  sync state, statistics outbox items, dead letters
    operator     the CLI: reads everything, writes the audit trail and dead-letter replays
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Final, Literal, get_args

__all__ = [
    "CREDENTIALS_FILE",
    "OUTBOX_KEY_FILE",
    "PARTS",
    "USER_PREFIX",
    "CredentialsError",
    "Part",
    "check_private",
    "ensure_private_dir",
    "load_credentials",
    "load_or_create_credentials",
    "load_or_create_outbox_key",
]

Part = Literal["admin", "connectors", "worker", "portal-sync", "operator"]
PARTS: Final[tuple[Part, ...]] = get_args(Part)
CREDENTIALS_FILE: Final = "credentials.json"
OUTBOX_KEY_FILE: Final = "outbox-signing.key"
#: SCRAM user names on the embedded broker: ``dvc-hub-<part>``.
USER_PREFIX: Final = "dvc-hub-"


class CredentialsError(RuntimeError):
    """A secrets file is unreadable, malformed or readable by others; the message says what to do."""


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it ``0700``: only the hub's user may enter it."""
    path.mkdir(parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)
    return path


def check_private(path: Path) -> None:
    """Refuse a secrets file that others can read or write (it would have leaked already)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CredentialsError(
            f"{path} is accessible to other users (mode {mode:04o}); its secrets may have leaked. "
            f"Run `chmod 600 {path}` and, if others could read it, delete the broker data directory "
            "to generate new credentials"
        )


def _create_exclusive(path: Path, text: str) -> bool:
    """Write ``text`` to a new ``0600`` file; False if it exists already (another process won)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return True


def _read(path: Path) -> str:
    # A file created by a concurrent process may still be empty for an instant.
    for _ in range(50):
        check_private(path)
        text = path.read_text(encoding="utf-8")
        if text.strip():
            return text
        time.sleep(0.05)
    raise CredentialsError(f"{path} is empty: delete it and start again")


def load_credentials(data_dir: Path) -> dict[Part, tuple[str, str]] | None:
    """The SCRAM users (part -> (username, password)) of the broker in ``data_dir``; None if there are none."""
    path = data_dir / CREDENTIALS_FILE
    if not path.is_file():
        return None
    try:
        users = json.loads(_read(path))["users"]
        return {part: (str(users[part]["username"]), str(users[part]["password"])) for part in PARTS}
    except (ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(
            f"{path} is not a DVC Hub credentials file ({type(exc).__name__}: {exc}); delete the broker data "
            "directory to start over with new credentials"
        ) from None


def load_or_create_credentials(data_dir: Path) -> dict[Part, tuple[str, str]]:
    """The broker's SCRAM users, generated (random 32-byte passwords) on the first call for ``data_dir``."""
    ensure_private_dir(data_dir)
    existing = load_credentials(data_dir)
    if existing is not None:
        return existing
    users = {part: {"username": f"{USER_PREFIX}{part}", "password": secrets.token_urlsafe(32)} for part in PARTS}
    _create_exclusive(data_dir / CREDENTIALS_FILE, json.dumps({"users": users}, indent=2) + "\n")
    created = load_credentials(data_dir)
    assert created is not None
    return created


def load_or_create_outbox_key(data_dir: Path) -> bytes:
    """The outbox HMAC key of this installation, generated (32 random bytes) on first use."""
    ensure_private_dir(data_dir)
    path = data_dir / OUTBOX_KEY_FILE
    if not path.is_file():
        _create_exclusive(path, secrets.token_hex(32) + "\n")
    text = _read(path).strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise CredentialsError(f"{path} does not hold a hex key of at least 16 bytes: delete it to generate one")
    return key
