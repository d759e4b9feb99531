"""The Linux start-up check (missing Qt platform libraries -> apt / dnf lines) and ``--doctor``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.models.settings import Settings
from app.startup import (
    APT,
    DNF,
    install_lines,
    one_line,
    platform_plugin,
    platform_problem,
    plugin_failure,
    qt_platform,
    xcb_message,
)
from inference.model.providers import LoadFailure, missing_libraries

ROOT = Path(__file__).resolve().parents[2]
LINUX = sys.platform.startswith("linux")

# Real `ldd` output of PySide6 6.11.3's libqxcb.so on Debian 12 without libxcb-icccm4 and
# libxcb-keysyms1 (the machine this was written on), as ldd printed it.
LDD_QXCB_DEBIAN12 = (Path(__file__).parent / "data" / "ldd-libqxcb-debian12.txt").read_text(encoding="utf-8")

# The system libraries libqxcb.so and libQt6XcbQpa.so link against (readelf -d, PySide6 6.11.3),
# less glibc / libstdc++, plus libEGL, libfontconfig and libdbus that Qt's Gui and DBus libraries load.
QXCB_NEEDED = [
    "libGL.so.1", "libxkbcommon.so.0", "libxkbcommon-x11.so.0", "libxcb-cursor.so.0", "libxcb-icccm.so.4",
    "libxcb-util.so.1", "libxcb-image.so.0", "libxcb-keysyms.so.1", "libxcb-randr.so.0", "libxcb-render-util.so.0",
    "libxcb-shm.so.0", "libxcb-sync.so.1", "libxcb-xfixes.so.0", "libxcb-render.so.0", "libxcb-shape.so.0",
    "libxcb-xkb.so.1", "libxcb.so.1", "libX11-xcb.so.1", "libX11.so.6", "libglib-2.0.so.0", "libgthread-2.0.so.0",
    "libEGL.so.1", "libfontconfig.so.1", "libdbus-1.so.3",
]


def test_missing_libraries_from_real_ldd_output() -> None:
    assert missing_libraries(LDD_QXCB_DEBIAN12) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert missing_libraries(LDD_QXCB_DEBIAN12.replace("not found", "/usr/lib/x.so (0x1)")) == []


def test_missing_libraries_map_to_one_apt_and_one_dnf_line() -> None:
    apt, dnf, unknown = install_lines(missing_libraries(LDD_QXCB_DEBIAN12))
    assert apt == "sudo apt-get install libxcb-icccm4 libxcb-keysyms1"
    assert dnf == "sudo dnf install xcb-util-keysyms xcb-util-wm"
    assert unknown == []
    apt, dnf, unknown = install_lines(["libxcb-cursor.so.0", "libxcb-xkb.so.1", "libxcb.so.1", "libfoo.so.3"])
    assert apt == "sudo apt-get install libxcb-cursor0 libxcb-xkb1 libxcb1"
    assert dnf == "sudo dnf install libxcb xcb-util-cursor"  # one package, named once
    assert unknown == ["libfoo.so.3"]


def test_every_library_the_plugin_needs_has_both_packages() -> None:
    assert [so for so in QXCB_NEEDED if so not in APT or so not in DNF] == []


def test_message_names_the_libraries_and_the_commands() -> None:
    failure = LoadFailure(Path("/x/libqxcb.so"), "libxcb-icccm.so.4: cannot open shared object file",
                          tuple(missing_libraries(LDD_QXCB_DEBIAN12)))
    text = xcb_message(failure)
    assert "missing libxcb-icccm.so.4, libxcb-keysyms.so.1" in text
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in text
    assert "sudo dnf install xcb-util-keysyms xcb-util-wm" in text
    assert "QT_QPA_PLATFORM=offscreen" in text
    assert "fix: sudo apt-get install libxcb-icccm4 libxcb-keysyms1 | sudo dnf install" in one_line(failure)
    unknown = xcb_message(LoadFailure(Path("/x/libqxcb.so"), "libweird.so.9: cannot open", ("libweird.so.9",)))
    assert "No package is known here for libweird.so.9" in unknown and "apt-get" not in unknown


def test_readme_lists_the_desktop_libraries() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(ln for ln in readme.splitlines() if ln.startswith("sudo apt-get install"))
    assert set(line.split()[3:]) == {APT[so] for so in QXCB_NEEDED}
    line = next(ln for ln in readme.splitlines() if ln.startswith("sudo dnf install"))
    assert set(line.split()[3:]) == {DNF[so] for so in QXCB_NEEDED}


def test_platform_choice() -> None:
    assert qt_platform({"QT_QPA_PLATFORM": "offscreen"}) == "offscreen"
    assert qt_platform({"QT_QPA_PLATFORM": "wayland;xcb"}) == "wayland"
    if LINUX:
        assert qt_platform({}) == "xcb"
        assert qt_platform({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}) == "wayland"
    assert plugin_failure("offscreen") is None
    assert platform_problem({"QT_QPA_PLATFORM": "offscreen"}) == ""
    # With a fallback (a list, or Qt's own wayland-then-xcb in a Wayland session) Qt is left to try.
    assert platform_problem({"QT_QPA_PLATFORM": "wayland;xcb"}) == ""
    assert platform_problem({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}) == ""


def _ldd_missing(path: Path) -> list[str]:
    ldd = shutil.which("ldd")
    assert ldd, "ldd is part of glibc on every Linux"
    return missing_libraries(subprocess.run([ldd, str(path)], capture_output=True, text=True, check=False).stdout)


@pytest.mark.skipif(not LINUX, reason="Qt's xcb plugin is Linux's")
def test_the_real_xcb_plugin_is_judged_as_ldd_sees_it() -> None:
    plugin = platform_plugin("xcb")
    assert plugin.is_file(), plugin
    missing = _ldd_missing(plugin)
    failure = plugin_failure("xcb")
    if missing:
        assert failure is not None and list(failure.missing) == missing
    else:
        assert failure is None


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(ROOT), **extra)
    return env


@pytest.mark.skipif(not LINUX, reason="Qt's xcb plugin is Linux's")
def test_app_without_xcb_libraries_or_display_says_what_is_missing(tmp_path: Path) -> None:
    """End to end: the app on xcb with no display. Where the plugin's libraries are missing (as on
    the machine this was written on) it names them and the apt line; where they are all present it
    says that there is no display. Either way it exits 1 with a message instead of Qt's abort."""
    env = _env(tmp_path, QT_QPA_PLATFORM="xcb")
    done = subprocess.run([sys.executable, "-m", "app", "--settings", str(tmp_path / "s.ini")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    missing = _ldd_missing(platform_plugin("xcb"))
    if missing:
        assert f"missing {', '.join(missing)}" in done.stderr
        assert install_lines(missing)[0] in done.stderr
    else:
        assert "no X display (DISPLAY is not set)" in done.stderr
    assert "Reinstalling the application" not in done.stderr


def _doctor(tmp_path: Path, settings: Path) -> subprocess.CompletedProcess[str]:
    env = _env(tmp_path, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-m", "app", "--doctor", "--settings", str(settings)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_doctor_reports_every_check(tmp_path: Path) -> None:
    settings = Settings(tmp_path / "s.ini")
    settings.store_path = tmp_path / "labels.sqlite"
    done = _doctor(tmp_path, settings.path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    statuses = {m.group(2): m.group(1) for m in (re.match(r"^(ok|FAILED|absent)\S*(?: \(optional\))?\s+([^:]+):", ln)
                                                 for ln in lines) if m}
    assert statuses["Qt platform plugin offscreen"] == "ok"
    assert statuses["CPUExecutionProvider"] == "ok"
    assert statuses["ONNX Runtime"] == "ok"
    assert statuses["model"] == "ok"
    assert statuses["label store"] == "ok" and (tmp_path / "labels.sqlite").is_file()
    assert statuses["numba cache folder"] == "ok"
    assert statuses["CUDAExecutionProvider"] in ("ok", "FAILED", "absent")  # optional: its line says why
    for name in ("RLE Lossless", "JPEG Baseline (Process 1)", "JPEG-LS Lossless Image Compression",
                 "JPEG 2000 Image Compression",
                 "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])"):
        assert statuses[f"pixel decoder {name}"] == "ok", name
    if LINUX:  # what a desktop would need, reported (optional) even in a headless run
        missing = _ldd_missing(platform_plugin("xcb"))
        xcb = next(ln for ln in lines if "Qt platform plugin xcb" in ln)
        assert ("missing " + ", ".join(missing) in xcb) if missing else xcb.startswith("ok")
    assert lines[-1] == "doctor: all required checks passed"


def test_doctor_fails_when_a_required_check_fails(tmp_path: Path) -> None:
    settings = Settings(tmp_path / "s.ini")
    (tmp_path / "folder").mkdir()
    settings.store_path = tmp_path / "folder"  # a folder, not a store file
    done = _doctor(tmp_path, settings.path)
    assert done.returncode == 1, done.stdout + done.stderr
    store = next(ln for ln in done.stdout.splitlines() if " label store:" in ln)
    assert store.startswith("FAILED ") and "the label store path is a folder" in store
    assert done.stdout.splitlines()[-1] == "doctor: 1 required check(s) failed"
