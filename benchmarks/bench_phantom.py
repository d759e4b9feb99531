"""Phantom speed on this machine: prints figures, asserts nothing.

    python benchmarks/bench_phantom.py [--repeats 3] [--rows 3000] [--cols 2400]

`render` time of a CC and an MLO phantom (density C, one mass, one calcification cluster) and
`write_dicom` time of the rendered CC image per transfer syntax (12 bits, MONOCHROME2, window;
8 bits for jpeg-baseline), with the file size. Each figure is the median of `--repeats` calls.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference.phantoms.generator import TRANSFER_SYNTAXES, PhantomSpec, render, write_dicom


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """(median, min) seconds of `repeats` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--cols", type=int, default=2400)
    args = ap.parse_args(argv)
    shape, n = (args.rows, args.cols), max(1, args.repeats)
    print(f"phantom benchmark: {shape[0]} x {shape[1]}, median of {n}, {platform.processor() or platform.machine()}")

    print("render")
    images = {}
    for view in ("CC", "MLO"):
        spec = PhantomSpec("L", view, "C", masses=1, calcifications=1, shape=shape, seed=7)  # type: ignore[arg-type]
        med, best, images[view] = median_time(lambda spec=spec: render(spec), n)
        print(f"  {view:<14s} {med * 1000:9.1f} ms  (min {best * 1000:8.1f} ms)")

    print("write_dicom (CC image)")
    spec = PhantomSpec("L", "CC", "C", masses=1, calcifications=1, shape=shape, seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        for name in TRANSFER_SYNTAXES:
            path = Path(tmp) / f"{name}.dcm"
            med, best, _ = median_time(
                lambda name=name, path=path: write_dicom(path, images["CC"], spec=spec, transfer_syntax=name), n
            )
            size = path.stat().st_size / 1e6
            print(f"  {name:<14s} {med * 1000:9.1f} ms  (min {best * 1000:8.1f} ms)  {size:6.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
