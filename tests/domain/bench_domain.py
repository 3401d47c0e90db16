"""Micro-benchmark of the domain hot path: ``python -m tests.domain.bench_domain [n]``.

Prints normalize_motcua µs/record, apply+aggregate µs/event and the size of a dossier state (JSON
bytes, and the Python heap measured with tracemalloc over n states, extrapolated to 1 million).
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc

from streams.domain.aggregates import Aggregates
from streams.domain.state import State, apply, view
from streams.normalize import fmt_compact, normalize_motcua
from tests.domain.factories import REG, payload, raw, t


def main(n: int = 50_000) -> None:
    recs = []
    units = [u.code for u in REG.units()]
    for i in range(n):
        rcv = t(2021, 1 + i % 12, 1 + i % 28, 8 + i % 9)
        steps = [
            {
                "TrangThai": "2",
                "ThoiDiemXuLy": fmt_compact(rcv),
                "PhongBanXuLy": "Bộ phận một cửa",
                "NoiDungXuLy": "Tiếp nhận",
            },
            {
                "TrangThai": "4",
                "ThoiDiemXuLy": fmt_compact(rcv),
                "PhongBanXuLy": "Công chức tư pháp",
                "NoiDungXuLy": "Chuyển xử lý",
            },
        ]
        recs.append(
            raw(
                payload(
                    MaHoSo=f"H56.{units[i % 35]}-210115-{i:06d}",
                    MaDonVi=units[i % 35],
                    NgayTiepNhan=fmt_compact(rcv),
                    NgayCapNhat=fmt_compact(rcv),
                    QuaTrinhXuLy=steps,
                    MucDo=3 + i % 2,
                    KenhThucHien=str(1 + i % 2),
                    TrangThaiHoSo=str((2, 4, 5, 9, 10)[i % 5]),
                    NgayKetThucXuLy=fmt_compact(t(2021, 1 + i % 12, 1 + (i + 3) % 28)) if i % 5 > 2 else "",
                )
            )
        )
    start = time.perf_counter()
    evs = [normalize_motcua(r, REG) for r in recs]
    norm_us = (time.perf_counter() - start) / n * 1e6

    agg = Aggregates(REG)
    states: dict[str, State] = {}
    start = time.perf_counter()
    for ev in evs:
        old = states.get(ev.ma_ho_so)
        new = apply(old, ev)
        if new is not None:
            agg.apply_change(hash(ev.ma_ho_so) % 8, view(old), view(new))
            states[ev.ma_ho_so] = new
    apply_us = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for ev in evs:  # replays: the common case after a restart
        if apply(states[ev.ma_ho_so], ev) is not None:
            raise AssertionError("a replay changed the state")
    replay_us = (time.perf_counter() - start) / n * 1e6

    json_bytes = sum(len(json.dumps(s, separators=(",", ":"))) for s in states.values()) / len(states)
    # Heap of the states as a faust memory table holds them (decoded JSON values, keys beside them).
    blobs = [json.dumps(s, separators=(",", ":")) for s in states.values()]
    keys = list(states)
    del states
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = {k: json.loads(b) for k, b in zip(keys, blobs, strict=True)}
    heap = (tracemalloc.get_traced_memory()[0] - before) / len(table)
    tracemalloc.stop()
    print(f"normalize_motcua        {norm_us:8.1f} µs/record  (2 progress rows)")
    print(f"apply + aggregate       {apply_us:8.1f} µs/event   (new dossiers, 8 partitions)")
    print(f"apply of a replay       {replay_us:8.1f} µs/event")
    print(f"state JSON              {json_bytes:8.0f} bytes/dossier")
    print(
        f"state in a Python dict  {heap:8.0f} bytes/dossier (key + decoded value) -> "
        f"{heap * 1e6 / 2**30:.2f} GiB per million"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
