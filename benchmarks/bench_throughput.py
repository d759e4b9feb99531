"""Throughput of ``python -m inference predict`` on a folder of large DICOMs: prints figures, asserts nothing.

    python benchmarks/bench_throughput.py [--n 96] [--folder DIR] [--no-ray] [--j2k 8]

On N generated uncompressed 16-bit 3000 x 2400 phantom DICOMs (written once into --folder, default a
temporary folder) with the bundled model:

- the preprocessing alone, per call: this version against the whole-image version it replaced
  (the frozen copy kept in tests/inference/model/test_preprocess_reference.py);
- the single-process floor: the least work any scorer does on these files in one process (read the
  pixels, convert them to float32, resize to 384 rows), in images/s;
- the CPU time per image of the CLI's stages in one process (a decode worker's work, the forward
  pass with the tasks only, as the CLI runs it, and with every output) and the most the cores could
  give with no overhead at all;
- the CLI, whatever pipeline ``predict`` runs: images/s after start-up (N images against 1, so the
  start-up cancels out), with 1 and 2 workers (``--workers`` when the command has it, else
  ``--threads``), the cores it kept busy (CPU time of the command and every process under it over
  wall time; the last 0.1 s of each process escapes the sampling) and its peak memory, parent and
  worker processes summed (both sampled from /proc, Linux);
- JPEG 2000 apart (--j2k files, lossless): decoding dominates;
- the local Ray cluster (``--engine ray``, start-up included) against the plain CLI on the same folder.

The target of issue 16: the CLI at least at the single-process floor after start-up, both cores busy.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPE = (3000, 2400)


def make_folder(folder: Path, n: int, syntax: str = "explicit") -> Path:
    """N phantoms (alternating sides and views), written once; a folder that has them is reused."""
    from inference.phantoms.generator import PhantomSpec, render, write_dicom

    folder.mkdir(parents=True, exist_ok=True)
    have = sorted(folder.glob("*.dcm"))
    if len(have) >= n:
        return folder
    drawn: dict[int, np.ndarray] = {}  # 8 different phantoms, repeated (drawing one takes seconds)
    for i in range(len(have), n):
        spec = PhantomSpec("LR"[i % 2], ("CC", "MLO")[(i // 2) % 2], "ABCD"[i % 4], shape=SHAPE, seed=i % 8)  # type: ignore[arg-type]
        if i % 8 not in drawn:
            drawn[i % 8] = render(spec)
        write_dicom(
            folder / f"IM{i:04d}.dcm", drawn[i % 8], spec=spec, patient_id=f"P{i // 4:03d}",
            sop_uid=f"1.2.826.0.1.3680043.8.498.16{i:06d}", bits_stored=16, transfer_syntax=syntax,
        )  # fmt: skip
    return folder


# --------------------------------------------------------------------------- preprocess
def bench_preprocess(repeats: int) -> None:
    from inference.imaging.geometry import find_breast
    from inference.model.preprocess import preprocess
    from inference.phantoms.generator import PhantomSpec, render

    spec = importlib.util.spec_from_file_location(
        "preprocess_reference", ROOT / "tests" / "inference" / "model" / "test_preprocess_reference.py"
    )
    assert spec is not None and spec.loader is not None
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    image = np.round(render(PhantomSpec("R", "MLO", shape=SHAPE, seed=1)) * 65535).astype(np.uint16)
    mask = find_breast(image.astype(np.float32))

    # Interleaved, the least of the repeats of each: the machine's load varies from one call to the next.
    old, new = [], []
    for _ in range(repeats):
        for fn, times in (
            (lambda: ref.reference(image, 384, mask=mask), old),
            (lambda: preprocess(image, 384, mask=mask), new),
        ):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
    t_old, t_new = min(old), min(new)
    print(
        f"preprocess of a 16-bit {SHAPE[0]} x {SHAPE[1]} image to 384 rows, breast mask handed on (least of {repeats}):"
    )
    print(f"  whole-image version (before): {t_old:6.1f} ms   banded (now): {t_new:6.1f} ms   x{t_old / t_new:.2f}")


# --------------------------------------------------------------------------- floor
def bench_floor(folder: Path, n: int) -> float:
    import pydicom

    files = sorted(folder.glob("*.dcm"))[:n]
    t0 = time.perf_counter()
    for f in files:
        a = pydicom.dcmread(f).pixel_array.astype(np.float32)
        w = max(1, round(a.shape[1] * 384 / a.shape[0]))
        np.asarray(Image.fromarray(a, mode="F").resize((w, 384), Image.Resampling.BILINEAR, reducing_gap=2.0))
    rate = len(files) / (time.perf_counter() - t0)
    print(f"single-process floor (read, float32, resize to 384 rows): {rate:.1f} images/s over {len(files)}")
    return rate


# --------------------------------------------------------------------------- cost per image
def bench_cost(folder: Path, model: Path | None, n: int = 16) -> None:
    """CPU time per image of each stage in one process (least of two passes over n images), and what
    two cores could give at best: the share of the work no pipeline avoids."""
    from inference.formats import SCORING_OUTPUTS
    from inference.imaging.studies import scan
    from inference.model.pipeline import Request, work
    from inference.model.session import ModelSession

    session = ModelSession.load(model, device="cpu", threads=1)
    records = scan([folder]).images[:n]
    tasks = [t for t in SCORING_OUTPUTS if t in session.output_names]
    best: dict[str, float] = {}
    for _ in range(2):
        spent = dict.fromkeys(("worker (limits, decode, preprocess)", "forward, tasks only", "forward, whole"), 0.0)
        for record in records:
            t0 = time.process_time()
            item = work(Request(record, session.height)).item
            t1 = time.process_time()
            assert item is not None
            x = item.array[None, None]
            session.run(x, outputs=tasks)
            t2 = time.process_time()
            session.run(x)
            t3 = time.process_time()
            for key, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                spent[key] += dt * 1000 / len(records)
        best = {k: min(v, best.get(k, v)) for k, v in spent.items()}
    graph = "scoring graph" if session.uses_scoring_graph(tasks) else "no scoring graph: the whole graph"
    print(f"CPU per image in one process (least of 2 passes over {len(records)}, one ONNX thread; {graph}): "
          + ", ".join(f"{k} {v:.1f} ms" for k, v in best.items()))  # fmt: skip
    per = best["worker (limits, decode, preprocess)"] + best["forward, tasks only"]
    print(f"  at best on {os.cpu_count()} cores with no overhead: {os.cpu_count() * 1000 / per:.1f} images/s")


# --------------------------------------------------------------------------- the command
def _tree(root: int) -> tuple[int, dict[int, float]]:
    """Resident memory (kB) of a process and all its descendants, and the CPU seconds each has used
    so far (from /proc, Linux; nothing elsewhere)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for d in Path("/proc").glob("[0-9]*"):
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            pid = int(d.name)
            parents[pid] = int(fields[1])
            cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
            for line in (d / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss[pid] = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = set(), [root]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo.extend(c for c, pp in parents.items() if pp == p and c not in tree)
    return sum(rss.get(p, 0) for p in tree), {p: cpu[p] for p in tree if p in cpu}


def run_cli(args: list[str]) -> dict[str, float]:
    """Wall time, CPU time and peak memory of the command and every process under it (Ray's too),
    sampled every 0.1 s."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "inference", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    peak = [0]
    used: dict[int, float] = {}

    def sample() -> None:
        while proc.poll() is None:
            rss, cpu = _tree(proc.pid)
            peak[0] = max(peak[0], rss)
            for pid, seconds in cpu.items():
                used[pid] = max(used.get(pid, 0.0), seconds)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"predict failed ({proc.returncode}): {err[-2000:]}")
    return {"wall": wall, "cpu": sum(used.values()), "peak_mb": peak[0] / 1024}


def worker_flag() -> str:
    help_text = subprocess.run(
        [sys.executable, "-m", "inference", "predict", "--help"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout  # fmt: skip
    return "--workers" if "--workers" in help_text else "--threads"


def bench_cli(
    folder: Path, one: Path, out: Path, floor: float, label: str = "uncompressed", model: Path | None = None
) -> None:
    n = len(list(folder.glob("*.dcm")))
    flag = worker_flag()
    for k in (1, 2):
        common = ["--out", str(out / "p.csv"), "--quiet", flag, str(k), *(["--model", str(model)] if model else [])]
        single = run_cli(["predict", str(one), *common])
        full = run_cli(["predict", str(folder), *common])
        span = full["wall"] - single["wall"]
        after = (
            f"{(n - 1) / span:.1f} images/s after start-up ({(n - 1) / span / floor:.2f}x the floor)"
            if span > 0.5
            else "after start-up: n/a (the start-up varied more than the images took; use a larger --n)"
        )
        print(
            f"CLI {label}, {flag} {k}: {n} images in {full['wall']:.1f} s ({n / full['wall']:.1f} images/s with "
            f"start-up; 1 image: {single['wall']:.1f} s) -> {after}; {full['cpu'] / full['wall']:.2f} cores busy; "
            f"peak memory {full['peak_mb']:.0f} MB (all processes)"
        )


def bench_ray(folder: Path, out: Path) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        print("Ray: not installed (pip install -e '.[cluster]')")
        return
    n = len(list(folder.glob("*.dcm")))
    plain = run_cli(["predict", str(folder), "--out", str(out / "plain.csv"), "--quiet"])
    shards = out / "ray.shards"
    clustered = run_cli(
        ["predict", str(folder), "--out", str(out / "ray.csv"), "--quiet", "--engine", "ray", "--shards", str(shards)]
    )
    again = run_cli(
        ["predict", str(folder), "--out", str(out / "ray2.csv"), "--quiet", "--engine", "ray", "--shards", str(shards)]
    )
    print(
        f"{n} images, start-up included: plain CLI {plain['wall']:.1f} s ({n / plain['wall']:.1f} images/s, "
        f"{plain['cpu'] / plain['wall']:.2f} cores, {plain['peak_mb']:.0f} MB); local Ray cluster "
        f"{clustered['wall']:.1f} s ({n / clustered['wall']:.1f} images/s, {clustered['cpu'] / clustered['wall']:.2f} "
        f"cores, {clustered['peak_mb']:.0f} MB); Ray again with every shard present (merge only) {again['wall']:.1f} s"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=96, help="images in the folder (default 96)")
    p.add_argument("--j2k", type=int, default=8, help="JPEG 2000 images measured apart (0: skip)")
    p.add_argument("--folder", type=Path, default=None, help="keep the generated images here (reused)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--model", type=Path, default=None, help="an ONNX model other than the bundled one (e.g. 2048 high)")
    p.add_argument("--cli-only", action="store_true", help="only the CLI on the uncompressed folder")
    args = p.parse_args()
    from inference.formats import read_model_manifest
    from inference.model.session import bundled_model_path

    manifest = read_model_manifest(args.model or bundled_model_path())
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; model {manifest.name} "
          f"{manifest.version}, height {manifest.input_height}")  # fmt: skip
    if not args.cli_only:
        bench_preprocess(args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        base = args.folder or Path(tmp) / "images"
        folder = make_folder(base / f"explicit-{args.n}", args.n)
        one = make_folder(base / "explicit-1", 1)
        out = Path(tmp) / "out"
        out.mkdir()
        floor = bench_floor(folder, args.n)
        bench_cost(folder, args.model)
        bench_cli(folder, one, out, floor, model=args.model)
        if args.cli_only:
            return
        if args.j2k:
            j2k = make_folder(base / f"jpeg2000-{args.j2k}", args.j2k, "jpeg2000")
            j2k_one = make_folder(base / "jpeg2000-1", 1, "jpeg2000")
            bench_cli(j2k, j2k_one, out, floor, label="JPEG 2000")
        if not args.no_ray:
            bench_ray(folder, out)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
