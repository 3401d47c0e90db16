"""A worker with faust producer settings changed, to measure a suggested fix without touching streams/app.py.

``python -m bench.variant --linger-ms 10 -- --config X --web-port P`` runs ``hub.commands.worker``
with ``producer_linger_ms`` (and ``producer_max_batch_size``) passed to every ``faust.App``. The
profile of the stock worker shows aiokafka sending one produce request per ~2 records (faust's
default linger is 0 ms), so batching is the first thing to try; this module measures it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import faust


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.variant")
    ap.add_argument("--linger-ms", type=int, default=10)
    ap.add_argument("--max-batch", type=int, default=512 * 1024)
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    original = faust.App.__init__

    def patched(self: Any, *a: Any, **kw: Any) -> None:
        kw.setdefault("producer_linger_ms", args.linger_ms)
        kw.setdefault("producer_max_batch_size", args.max_batch)
        original(self, *a, **kw)

    faust.App.__init__ = patched  # type: ignore[method-assign]
    from hub.commands.worker import main as worker_main

    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    return worker_main(rest)


if __name__ == "__main__":
    sys.exit(main())
