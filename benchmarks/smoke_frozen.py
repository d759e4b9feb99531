"""Smoke test and figures of the frozen bundle (build it first: see docs/install.md).

    python benchmarks/smoke_frozen.py [--dist dist/mammo-review]

Checks, headlessly (QT_QPA_PLATFORM=offscreen):
  1. the bundle holds no PyTorch / ONNX (exporter) / training code, and measures its size;
  2. ``mammo-review-selftest`` passes (pixel decoders, bundled samples + model, UMAP/numba);
  3. ``mammo-review --screenshot FILE`` opens the bundled samples, runs the model and writes a
     PNG that is non-trivial (big, many grey levels, not one flat colour);
  4. ``mammo-review --doctor`` passes (its lines are printed: what the bundle could not load);
  5. launch-to-first-window time: from launch to the offscreen platform's first notice that a
     top-level window was shown (and with ``--exit-after-show`` once the app offers it).
Prints one line per figure; exits 1 when a check fails. Settings, caches and the numba cache go
to a temporary folder, so the user's own are not touched.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE_AIM_MB = 700.0
FIRST_WINDOW_AIM_S = 5.0
_EXE = ".exe" if sys.platform == "win32" else ""
# Names that must never be in the bundle (the runtime is ONNX Runtime only) ...
_FORBIDDEN = re.compile(r"^(torch.*|libtorch.*|onnx|onnxscript|onnx_ir|onnx-.*|onnxscript-.*)$", re.I)
# ... and project packages that must not ship (at the top of _internal/ only: sklearn has its own tests).
_FORBIDDEN_TOP = ("training", "tests")
# The offscreen platform prints this when a top-level window is first shown: the smoke test takes
# the first one as the moment the main window appears (until the app has --exit-after-show).
_SHOWN = "propagateSizeHints"


def bundle_size(root: Path) -> tuple[float, int]:
    """Total size in MB and number of files under `root` (links not followed)."""
    total, count = 0, 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
            count += 1
    return total / 1e6, count


def forbidden_paths(root: Path) -> list[str]:
    """Files or folders of the bundle whose name says torch, onnx (exporter), training or tests."""
    hits = []
    for path in root.rglob("*"):
        name = path.name.split(".")[0] if path.is_file() else path.name
        if _FORBIDDEN.match(name):
            hits.append(str(path.relative_to(root)))
    internal = root / "_internal" if (root / "_internal").is_dir() else root
    hits += [str((internal / n).relative_to(root)) for n in _FORBIDDEN_TOP if (internal / n).exists()]
    return sorted(hits)


def forbidden_modules(exe: Path) -> list[str] | None:
    """Modules in the executable's Python archive from torch, onnx, training, tests or any module
    path naming torch (None when PyInstaller, which reads the archive, is not installed)."""
    try:
        from PyInstaller.archive.readers import CArchiveReader
    except ImportError:
        return None
    package = CArchiveReader(str(exe))
    names = [n for pyz in package.toc if pyz.endswith(".pyz") for n in package.open_embedded_archive(pyz).toc]
    return sorted(
        n
        for n in names
        if _FORBIDDEN.match(n.split(".")[0]) or n.split(".")[0] in _FORBIDDEN_TOP or "torch" in n.split(".")
    )


def run(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, float]:
    """Run `cmd`; return its exit status, its output (stdout + stderr) and the wall time."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return 124, out + f"\n(timed out after {timeout:g} s)", time.perf_counter() - t0
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - t0


def run_timed(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, float, float | None]:
    """Like `run`, also returning the seconds from launch to the first line naming `_SHOWN`."""
    t0 = time.perf_counter()
    shown: float | None = None
    lines: list[str] = []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if shown is None and _SHOWN in line:
                shown = time.perf_counter() - t0
            lines.append(line)
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                lines.append(f"(killed after {timeout:g} s)\n")
                break
        rc = proc.wait()
    return rc, "".join(lines), time.perf_counter() - t0, shown


def check_png(path: Path) -> str:
    """'' when `path` is a non-trivial screenshot, else what is wrong with it."""
    if not path.is_file() or path.stat().st_size < 10_000:
        return f"{path} missing or under 10 kB"
    from PIL import Image, ImageStat

    with Image.open(path) as im:
        im.load()
        grey = im.convert("L")
        width, height = im.size
        levels = len(grey.getcolors(256) or [])
        spread = ImageStat.Stat(grey).stddev[0]
    if width < 800 or height < 500:
        return f"{path}: only {width} x {height} px"
    if levels < 64 or spread < 10:
        return f"{path}: looks flat ({levels} grey levels, std {spread:.1f})"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=Path(__file__).resolve().parents[1] / "dist" / "mammo-review")
    parser.add_argument("--keep", type=Path, help="copy the screenshot here")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-process limit in seconds")
    parser.add_argument("--runs", type=int, default=3, help="launches of the app (first-window and screenshot times)")
    parser.add_argument("--no-selftest", action="store_true", help="skip mammo-review-selftest (about 1 minute)")
    args = parser.parse_args(argv)
    root: Path = args.dist.resolve()
    app, selftest = root / f"mammo-review{_EXE}", root / f"mammo-review-selftest{_EXE}"
    failures: list[str] = []

    size_mb, files = bundle_size(root)
    print(
        f"bundle: {root} {size_mb:.0f} MB in {files} files "
        f"(aim < {SIZE_AIM_MB:.0f} MB: {'met' if size_mb < SIZE_AIM_MB else 'NOT met'})"
    )
    bad = forbidden_paths(root)
    print(f"forbidden content (torch, onnx exporter, training, tests): {', '.join(bad[:8]) if bad else 'none'}")
    if bad:
        failures.append(f"forbidden content in the bundle: {', '.join(bad[:8])}")
    for exe in (app, selftest):
        if exe.is_file():
            modules = forbidden_modules(exe)
            if modules is None:
                print(f"{exe.name}: Python archive not inspected (PyInstaller is not installed here)")
                break
            print(
                f"{exe.name}: forbidden modules in its Python archive: {', '.join(modules[:8]) if modules else 'none'}"
            )
            if modules:
                failures.append(f"{exe.name} archive holds {', '.join(modules[:8])}")

    with tempfile.TemporaryDirectory(prefix="mammo-smoke-") as tmp_name:
        tmp = Path(tmp_name)
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CACHE_HOME=str(tmp / "cache"),
                   XDG_CONFIG_HOME=str(tmp / "config"), XDG_DATA_HOME=str(tmp / "data"),
                   LOCALAPPDATA=str(tmp / "cache"), APPDATA=str(tmp / "data"))  # fmt: skip
        env.pop("NUMBA_CACHE_DIR", None)

        if args.no_selftest:
            print("selftest: skipped (--no-selftest)")
        elif selftest.is_file():
            for attempt in ("cold numba cache", "warm numba cache"):
                rc, out, wall = run([str(selftest)], env, args.timeout)
                print(f"selftest ({attempt}): exit {rc} in {wall:.1f} s")
                for line in out.splitlines():
                    if line.startswith(("OK", "FAIL", "selftest:")):
                        print("    " + line[:200])
                if rc != 0:
                    failures.append(f"selftest exit {rc}:\n{out[-3000:]}")
                    break
            cached = list((tmp / "cache" / "mammo-review" / "numba").rglob("*.nbi"))
            print(f"numba cache in the user cache folder: {len(cached)} index files")
            if not cached:
                failures.append("numba wrote nothing to <user cache>/mammo-review/numba")
        else:
            failures.append(f"{selftest} not found")

        if app.is_file():
            # --doctor: every check of the installation, as the user would run it (Qt offscreen here).
            rc, out, wall = run([str(app), "--doctor", "--settings", str(tmp / "settings.ini")], env, args.timeout)
            print(f"app --doctor: exit {rc} in {wall:.1f} s")
            for line in out.splitlines():
                if line.startswith(("ok", "FAILED", "absent", "doctor:")):
                    print("    " + line[:200])
            if rc != 0:
                failures.append(f"--doctor exit {rc}:\n{out[-3000:]}")
            shot = tmp / "screenshot.png"
            cmd = [
                str(app),
                "--screenshot",
                str(shot),
                "--settings",
                str(tmp / "settings.ini"),
                "--cache",
                str(tmp / "predictions"),
            ]
            walls, shown_at = [], []
            for i in range(max(1, args.runs)):
                # a fresh prediction cache each time: every run decodes and runs the model
                cmd[-1] = str(tmp / f"predictions-{i}")
                rc, out, wall, shown = run_timed(cmd, env, args.timeout)
                noise = [line for line in out.strip().splitlines() if _SHOWN not in line]
                print(f"app --screenshot run {i + 1} (bundled samples, model on CPU): exit {rc}, "
                      f"window shown at {'?' if shown is None else f'{shown:.2f}'} s, "
                      f"screenshot written at {wall:.2f} s")  # fmt: skip
                for line in noise[-4:]:
                    print("    " + line[:200])
                if rc != 0:
                    failures.append(f"--screenshot exit {rc}:\n{out[-3000:]}")
                    break
                walls.append(wall)
                if shown is not None:
                    shown_at.append(shown)
            problem = check_png(shot) if walls else "no run succeeded"
            if problem:
                failures.append(f"screenshot: {problem}")
            else:
                print(f"screenshot: {shot.stat().st_size / 1e3:.0f} kB, non-trivial")
                if args.keep:
                    args.keep.write_bytes(shot.read_bytes())
                    print(f"screenshot kept at {args.keep}")
            if walls:
                print(
                    f"launch to screenshot (8 images decoded + model): first {walls[0]:.2f} s, "
                    f"median {statistics.median(walls):.2f} s"
                )
            if shown_at:
                median = statistics.median(shown_at)
                print(f"launch to first window (main window shown): first {shown_at[0]:.2f} s, median {median:.2f} s "
                      f"over {len(shown_at)} (aim < {FIRST_WINDOW_AIM_S:g} s: "
                      f"{'met' if median < FIRST_WINDOW_AIM_S else 'NOT met'})")  # fmt: skip

            rc, help_text, _ = run([str(app), "--help"], env, 120)
            if "--exit-after-show" in help_text:
                times = []
                for _ in range(max(1, args.runs)):
                    flag = [
                        str(app),
                        "--exit-after-show",
                        "--settings",
                        str(tmp / "settings.ini"),
                        "--cache",
                        str(tmp / "predictions"),
                    ]
                    rc, out, wall = run(flag, env, args.timeout)
                    if rc != 0:
                        failures.append(f"--exit-after-show exit {rc}:\n{out[-2000:]}")
                        break
                    times.append(wall)
                if times:
                    print(f"launch to first window (process wall time with --exit-after-show): first {times[0]:.2f} s, "
                          f"median {statistics.median(times):.2f} s over {len(times)} (aim < {FIRST_WINDOW_AIM_S:g} s: "
                          f"{'met' if statistics.median(times) < FIRST_WINDOW_AIM_S else 'NOT met'})")  # fmt: skip
            else:
                print(
                    "(no --exit-after-show in this app: "
                    "the first-window figure above comes from the window-shown notice)"
                )
        else:
            failures.append(f"{app} not found")

    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print("smoke test: " + ("passed" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
