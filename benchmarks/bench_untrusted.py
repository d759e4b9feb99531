"""Hostile files on this machine: time and peak memory of the header limits, and of isolated decoding.

    python benchmarks/bench_untrusted.py [--decode] [--memory-mb 1024] [--decode-mpx 0] [--predict]

For each generated bomb (inference.phantoms.hostile: an RLE file claiming 16384 x 16384, a 65535^2
claim, a deflated data set inflating to 1 GB, a JPEG 2000 whose SIZ claims 60000 x 60000) and the
panicking RLE frame: ``limits.check_file`` in a fresh interpreter, with its time, its outcome and the
interpreter's peak resident memory above a bare one's (ru_maxrss). With ``--decode``, the same files
are also decoded by a ``DecodePool`` whose workers are capped at ``--memory-mb``: the outcome per
file and the parent's peak memory (the workers' is capped). With ``--decode-mpx N``, the smallest
worker memory limit (512 MB steps) at which an uncompressed 16-bit N-megapixel image decodes.
With ``--predict``, the issue's hostile folder (``hostile.hostile_folder`` at full size: panicking
RLE, RLE bomb, 1 GB deflate bomb, 65535^2 claim, formulas and traversals) beside ``--good`` good
3000 x 2400 phantoms goes through ``python -m inference predict`` (default limits) in a child: its exit
code, rows per status, and the peak resident memory of the CLI process and of its largest decode
worker (ru_maxrss of the process and of its children); the target is 1.5 GB.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from inference.phantoms import generator as phantom
from inference.phantoms.hostile import (
    panic_rle,
    patch_j2k_size,
    pixel_claim,
    rle_frame,
    write_deflate_bomb,
    write_rle,
)

_CHILD = """
import resource, sys, time
from inference.imaging.limits import check_file
start = time.perf_counter()
try:
    check_file(sys.argv[1])
    outcome = "passed"
except Exception as exc:
    outcome = type(exc).__name__ + ": " + getattr(exc, "reason", str(exc))
print(f"{time.perf_counter() - start:.3f}\\t{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\t{outcome}")
"""
_PREDICT = """
import resource, sys
from inference.cli import main
code = main(sys.argv[1:])
own, workers = (resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(f"{code}\t{own}\t{workers}")
"""
_BARE = ("import resource; from inference.imaging import limits; "
         "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def build(folder: Path) -> dict[str, Path]:
    run = b"\x81\x00"
    spec = phantom.PhantomSpec("L", "CC", shape=(256, 192), seed=1)
    j2k = phantom.write_dicom(folder / "j2k.dcm", phantom.render(spec), spec=spec, transfer_syntax="jpeg2000")
    return {
        "panic RLE 16x16": panic_rle(folder / "panic.dcm"),
        "RLE claiming 16384^2": write_rle(folder / "rle.dcm", 16384, 16384, 16,
                                          rle_frame([run * 65536, run * 65536])),
        "claim 65535^2": pixel_claim(folder / "claim.dcm", 65535, 65535),
        "deflate to 1 GB": write_deflate_bomb(folder / "deflate.dcm", inflated_mb=1024),
        "J2K SIZ 60000^2": patch_j2k_size(j2k, folder / "siz.dcm", 60000, 60000),
    }


def check_in_child(path: Path) -> tuple[float, int, str]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True)
    seconds, rss, outcome = out.stdout.strip().split("\t", 2)
    return float(seconds), int(rss), outcome


def smallest_limit(mpx: int, folder: Path) -> str:
    from inference.imaging.isolation import DecodePool
    from inference.phantoms.hostile import mg_dataset

    side = int(np.sqrt(mpx * 1e6))
    ds = mg_dataset(side, side, 16, "1.2.840.10008.1.2.1")
    yy, xx = np.ogrid[:side, :side]
    img = np.where((yy - side / 2) ** 2 + (xx * 0.8) ** 2 < (side / 2.2) ** 2, 2000, 50).astype(np.uint16)
    img += np.random.default_rng(0).integers(0, 200, size=img.shape, dtype=np.uint16)
    ds.PixelData, ds.BitsStored, ds.HighBit = img.tobytes(), 12, 11
    ds["PixelData"].VR = "OW"
    path = folder / "big.dcm"
    ds.save_as(path, enforce_file_format=True)
    del img, ds
    for limit in range(1024, 16385, 512):
        with DecodePool(workers=1, memory_limit_mb=limit, timeout_s=None) as pool:
            start = time.perf_counter()
            try:
                pool.load(path)
            except Exception:  # noqa: BLE001 - over the cap: try the next one
                continue
            return f"{limit} MB ({time.perf_counter() - start:.1f} s to decode)"
    return "over 16384 MB"


def predict_hostile(folder: Path, good: int) -> None:
    """The hostile folder beside good phantoms through ``predict`` in a child; peak memory of both sides."""
    import csv
    from collections import Counter

    from inference.phantoms.hostile import hostile_folder

    inputs = folder / "predict-in"
    template = None
    for n in range(good):
        spec = phantom.PhantomSpec("RL"[n % 2], ("CC", "MLO")[n // 2 % 2], shape=(3000, 2400), seed=n)
        path = phantom.write_dicom(inputs / f"good-{n}.dcm", phantom.render(spec), spec=spec, bits_stored=14)
        template = template or path
    assert template is not None
    hostile_folder(inputs, template, deflate_mb=1024)
    out = folder / "predict-out"
    command = [sys.executable, "-c", _PREDICT, "predict", str(inputs), "--out", str(out / "p.csv"),
               "--maps", str(out / "maps"), "--quiet", "--device", "cpu"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    code, own, workers = done.stdout.strip().splitlines()[-1].split("\t")
    with open(out / "p.csv", newline="", encoding="utf-8") as f:
        statuses = Counter(r["status"] for r in csv.DictReader(f) if r["level"] == "image")
    print(f"\npredict on {good} good 3000 x 2400 phantoms + 5 hostile files: exit {code}, {seconds:.1f} s, "
          f"image rows {dict(statuses)}")
    print(f"  peak resident memory: CLI process {int(own) / 1024:.0f} MB, largest decode worker "
          f"{int(workers) / 1024:.0f} MB (target: under 1500 MB each)")
    print(f"  stderr: {len(done.stderr.splitlines())} line(s), traceback: {'Traceback' in done.stderr}, "
          f"warning: {'Warning' in done.stderr}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decode", action="store_true", help="also decode the files in capped workers")
    ap.add_argument("--memory-mb", type=int, default=1024, help="the workers' memory cap for --decode")
    ap.add_argument("--decode-mpx", type=int, default=0, help="find the memory an N Mpx decode needs")
    ap.add_argument("--predict", action="store_true", help="run the hostile folder through predict")
    ap.add_argument("--good", type=int, default=4, help="good phantoms beside the hostile files for --predict")
    args = ap.parse_args(argv)
    print(f"# {platform.platform()}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = build(folder)
        bare = int(subprocess.run([sys.executable, "-c", _BARE], capture_output=True, text=True,
                                  check=True).stdout.strip())
        print(f"bare interpreter with limits imported: peak {bare / 1024:.0f} MB")
        print(f"{'file':24} {'size':>10} {'check s':>8} {'+peak MB':>9}  outcome")
        for name, path in files.items():
            seconds, rss, outcome = check_in_child(path)
            size = path.stat().st_size
            print(f"{name:24} {size / 1e6:8.2f}MB {seconds:8.3f} {(rss - bare) / 1024:9.1f}  {outcome[:110]}")
        if args.decode:
            from inference.imaging.isolation import DecodePool

            print(f"\ndecoded in workers capped at {args.memory_mb} MB (no header limits):")
            with DecodePool(workers=1, memory_limit_mb=args.memory_mb, timeout_s=120) as pool:
                for source, result in pool.map(list(files.values())):
                    name = next(n for n, p in files.items() if p == source)
                    text = "decoded" if not isinstance(result, Exception) else result.reason
                    print(f"  {name:24} {text[:120]}")
            parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  parent peak {parent:.0f} MB; replaced workers: {pool.replaced}")
        if args.predict:
            predict_hostile(folder, args.good)
        if args.decode_mpx:
            print(f"\nsmallest worker memory limit for a {args.decode_mpx} Mpx decode: "
                  f"{smallest_limit(args.decode_mpx, folder)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
