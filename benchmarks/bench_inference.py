"""Inference speed and memory on this machine: prints figures, asserts nothing.

    python benchmarks/bench_inference.py [--repeats 5] [--large-height 2048] [--no-torch]

Per image, for an uncompressed 16-bit ~3000 x 2400 phantom DICOM: decoding (``load_image``),
preprocessing, the ONNX Runtime forward pass, the post-processing (Monte-Carlo dropout) and the
total, at the bundled model's height and at ``--large-height`` (a random-weight model exported
into a temporary folder; needs torch). JPEG 2000 decoding is reported apart. The same network in
PyTorch eager mode (the training module, ``training.model.MammoNet``) runs in the same process for
comparison (torch imported only here), in alternating rounds with ONNX Runtime. Peak memory
is the maximum resident set of a child process that runs ``python -m inference predict`` on a
4-view study (maps included). Targets (issue 3): ONNX >= 3x faster than eager, end to end
<= 0.6 s at 2048 for the uncompressed image, peak memory of a 4-view study <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inference.formats import SCORING_OUTPUTS
from inference.imaging.decode import load_image
from inference.model.predict import predict_inputs, prepare
from inference.model.session import ModelSession, bundled_model_path, physical_cores
from inference.phantoms.generator import Mass, PhantomSpec, render, write_dicom, write_study

SHAPE = (3000, 2400)


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """(median, min) seconds of ``repeats`` calls after one warm-up call, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), result


def row(label: str, median: float, best: float, note: str = "") -> None:
    print(f"  {label:<34s} {median * 1000:9.1f} ms  (min {best * 1000:8.1f} ms) {note}")


def export_large(height: int, folder: Path) -> Path | None:
    try:
        from training.model import build_model
        from training.onnx.export import export_onnx
    except ImportError as exc:  # runtime-only installation
        print(f"  (no model at height {height}: {exc})")
        return None
    path = folder / f"random-{height}.onnx"
    export_onnx(build_model(seed=0), path, height=height, version=f"bench-random-{height}")
    return path


def bench_model(model: Path, image: Path, repeats: int, with_torch: bool) -> dict[str, float]:
    session = ModelSession.load(model, device="cpu")
    h = session.height
    print(f"\nmodel {model.name}: height {h}, {session.device}, {session.threads} intra-op threads")
    dec_m, dec_b, loaded = timed(lambda: load_image(image), repeats)
    pre_m, pre_b, item = timed(lambda: prepare(loaded, h), repeats)
    batch = item.array[None, None]
    inf_m, inf_b, _ = timed(lambda: session.run(batch), repeats)
    tasks = [n for n in session.output_names if n in SCORING_OUTPUTS]
    sco_m, sco_b, _ = timed(lambda: session.run(batch, outputs=tasks), repeats)
    post_m, post_b, _ = timed(lambda: predict_inputs(session, [item]), repeats)
    tot_m, tot_b, preds = timed(lambda: predict_inputs(session, [prepare(load_image(image), h)]), repeats)
    map_m, map_b, _ = timed(lambda: (preds[0].evidence_original(), preds[0].error_map_original()), repeats)
    print(
        f"  input {item.array.shape[0]} x {item.array.shape[1]} "
        f"from {loaded.pixels.shape[0]} x {loaded.pixels.shape[1]}"
    )
    row("decode (load_image)", dec_m, dec_b)
    row("preprocess", pre_m, pre_b)
    row("decode + preprocess", dec_m + pre_m, dec_b + pre_b)
    row("ONNX Runtime forward", inf_m, inf_b)
    scoring = "scoring graph" if session.uses_scoring_graph(tasks) else "whole graph: no scoring graph beside the model"
    row("forward, tasks and z only", sco_m, sco_b, f"({scoring}; the CLI without --maps)")
    row("forward + MC dropout + outputs", post_m, post_b)
    row("total: file -> Prediction", tot_m, tot_b)
    row("maps to original (evidence + error)", map_m, map_b, "(lazy, on request)")
    figures = {"total": tot_m, "total_min": tot_b}

    for n in (2, 4):
        many = np.repeat(batch, n, axis=0)
        m, b, _ = timed(lambda many=many: session.run(many), max(1, repeats // 2))
        row(f"ONNX forward, batch {n}, per image", m / n, b / n)

    if with_torch:
        eager = torch_eager(batch)
        if eager is not None:
            figures.update(versus_eager(lambda: session.run(batch), eager, repeats))
    return figures


def versus_eager(onnx: Callable[[], Any], eager: Callable[[], Any], repeats: int) -> dict[str, float]:
    """ONNX Runtime against PyTorch eager (the training module), measured in alternating rounds.

    This machine is shared, and its speed drifts by tens of percent over seconds; alternating
    rounds expose both to the same drift. A pause before each round lets the other runtime's
    worker threads stop spinning.
    """
    rounds, per_round = max(3, repeats), 3
    times: dict[str, list[float]] = {"ONNX Runtime": [], "PyTorch eager (training module)": []}
    for _ in range(rounds):
        for fn, ts in zip((onnx, eager), times.values(), strict=True):
            time.sleep(0.3)
            fn()
            for _ in range(per_round):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
    print(f"  ONNX Runtime against PyTorch eager, {rounds} alternating rounds of {per_round}:")
    for name, ts in times.items():
        row(name, statistics.median(ts), min(ts))
    (o_med, o_min), (e_med, e_min) = ((statistics.median(ts), min(ts)) for ts in times.values())
    print(f"  ONNX Runtime speed-up over eager: {e_med / o_med:.1f}x by medians, {e_min / o_min:.1f}x by minima")
    return {"onnx_vs": o_med, "onnx_vs_min": o_min, "eager": e_med, "eager_min": e_min}


def torch_eager(batch: np.ndarray) -> Callable[[], Any] | None:
    try:
        import torch

        from training.model import build_model
        from training.onnx.export import OnnxWrapper
    except ImportError:
        print("  (PyTorch not installed: no eager comparison)")
        return None
    torch.set_num_threads(physical_cores())
    net = OnnxWrapper(build_model(seed=0)).eval()
    x = torch.from_numpy(batch)

    def call() -> Any:
        with torch.inference_mode():
            return net(x)

    return call


def bench_jpeg2000(folder: Path, pixels: np.ndarray, spec: PhantomSpec, repeats: int) -> None:
    path = write_dicom(folder / "j2k.dcm", pixels, spec=spec, bits_stored=16, transfer_syntax="jpeg2000")
    print(f"\nJPEG 2000 lossless ({path.stat().st_size / 1e6:.1f} MB on disk)")
    m, b, _ = timed(lambda: load_image(path), max(1, repeats // 2))
    row("decode (load_image)", m, b)


_CHILD = """
import sys
from inference.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status", encoding="ascii").read()
peak = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
print(code, peak)
"""


def peak_memory(model: Path, study: Path, out: Path) -> tuple[float, float]:
    """Peak resident set (MB, the child's own VmHWM) and wall time (s, process start included) of
    ``python -m inference predict`` on the study, maps included. (A child's ru_maxrss would include
    this process's size at fork time.)"""
    args = ["predict", str(study), "--model", str(model), "--out", str(out / "p.csv"),
            "--maps", str(out / "maps"), "--quiet", "--device", "cpu"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    try:
        code, peak_kb = (int(v) for v in proc.stdout.split())
    except ValueError:
        raise RuntimeError(f"predict failed: {proc.stderr.strip()}") from None
    if code:
        raise RuntimeError(f"predict exited {code}: {proc.stderr.strip()}")
    return peak_kb / 1024.0, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large-height", type=int, default=2048)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager comparison")
    args = parser.parse_args(argv)

    import onnxruntime

    print(
        f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())} "
        "(other work on this machine slows every figure)"
    )
    print(f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"{physical_cores()} physical cores; "
          f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mammo-bench-") as tmp:
        folder = Path(tmp)
        spec = PhantomSpec("R", "MLO", "C", masses=(Mass(0.5, 0.35, 0.04, True),), shape=SHAPE, seed=1)
        pixels = render(spec)
        image = write_dicom(folder / "plain.dcm", pixels, spec=spec, bits_stored=16, transfer_syntax="explicit")
        print(f"image: {SHAPE[0]} x {SHAPE[1]} 16-bit uncompressed DICOM ({image.stat().st_size / 1e6:.1f} MB)")

        results: dict[int, dict[str, float]] = {}
        models: list[Path] = [bundled_model_path()]
        large = export_large(args.large_height, folder)
        if large is not None:
            models.append(large)
        for model in models:
            h = ModelSession.load(model, device="cpu").height
            results[h] = bench_model(model, image, args.repeats, not args.no_torch)
        bench_jpeg2000(folder, pixels, spec, args.repeats)

        study = folder / "study"
        write_study(study, shape=SHAPE, bits_stored=16, malignant_side="L", seed=2)
        print("\npeak memory, `python -m inference predict` on a 4-view 3000 x 2400 study with --maps:")
        peaks = {}
        for model in models:
            h = ModelSession.load(model, device="cpu").height
            peaks[h], wall = peak_memory(model, study, folder / f"out{h}")
            print(
                f"  height {h:5d}: {peaks[h]:7.0f} MB resident (target <= 1536 MB); "
                f"{wall:5.1f} s wall, start-up included"
            )

        print("\ntargets:")
        for h, f in results.items():
            if "eager" in f:
                ratio, best = f["eager"] / f["onnx_vs"], f["eager_min"] / f["onnx_vs_min"]
                print(f"  height {h}: ONNX {ratio:.1f}x faster than eager by medians, {best:.1f}x by "
                      f"minima (>= 3x): {'met' if min(ratio, best) >= 3 else 'NOT met'}")  # fmt: skip
        if args.large_height in results:
            t, b = results[args.large_height]["total"], results[args.large_height]["total_min"]
            print(f"  end to end at {args.large_height}: median {t:.2f} s, best {b:.2f} s (<= 0.6 s): "
                  f"{'met' if t <= 0.6 else 'met at best only' if b <= 0.6 else 'NOT met'}")  # fmt: skip
        print(f"  (load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())})")
        worst = max(peaks.values())
        print(f"  peak memory, 4-view study: {worst:.0f} MB (<= 1536 MB): {'met' if worst <= 1536 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
