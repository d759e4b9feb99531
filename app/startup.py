"""Before Qt starts on Linux: can its platform plugin load, and if not, which system packages fix it.

Qt aborts the process when its platform plugin cannot load ("Could not load the Qt platform plugin
xcb ... Reinstalling the application may fix this problem") without naming the missing library.
:func:`platform_problem` loads the plugin first (as Qt would) and, when that fails, names the
missing libraries (from the loader's error and ``ldd``) and prints the one apt and one dnf line that
installs them. The libraries are those PySide6's ``libqxcb.so`` links against (checked with ``ldd``
on Debian 12, PySide6 6.11); README.md lists them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from inference.model.providers import LoadFailure, load_failure

__all__ = [
    "APT", "DNF", "install_lines", "one_line", "platform_plugin", "platform_problem", "plugin_failure", "qt_platform",
    "xcb_message",
]

# soname -> (Debian / Ubuntu package, Fedora / RHEL package): what libqxcb.so and the Qt libraries it
# loads need from the system (PySide6's wheel ships Qt itself and ICU).
_PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor"),
}
APT = {so: deb for so, (deb, _) in _PACKAGES.items()}
DNF = {so: rpm for so, (_, rpm) in _PACKAGES.items()}


def qt_platform(environ: Mapping[str, str] | None = None) -> str:
    """The platform plugin Qt will try first: QT_QPA_PLATFORM, else wayland in a Wayland session, else
    xcb on Linux ('' on Windows and macOS, where Qt's own plugin needs nothing from the system)."""
    env = os.environ if environ is None else environ
    chosen = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if chosen:
        return chosen
    if not sys.platform.startswith("linux"):
        return ""
    if env.get("XDG_SESSION_TYPE") == "wayland" and env.get("WAYLAND_DISPLAY"):
        return "wayland"
    return "xcb"


def platform_plugin(name: str) -> Path:
    """The file of Qt's platform plugin ``name`` in the installed PySide6 (e.g. libqxcb.so)."""
    import PySide6

    return Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / f"libq{name}.so"


def install_lines(missing: list[str] | tuple[str, ...]) -> tuple[str, str, list[str]]:
    """(apt line, dnf line, libraries neither table knows) for the missing libraries."""
    apt = sorted({APT[so] for so in missing if so in APT})
    dnf = sorted({DNF[so] for so in missing if so in DNF})
    unknown = [so for so in missing if so not in APT]
    return (
        f"sudo apt-get install {' '.join(apt)}" if apt else "",
        f"sudo dnf install {' '.join(dnf)}" if dnf else "",
        unknown,
    )


def xcb_message(failure: LoadFailure, platform: str = "xcb") -> str:
    """What to tell the user when the platform plugin does not load: the libraries and the fix."""
    lines = [f"mammo-review: Qt's {platform!r} platform plugin cannot load ({failure.path.name}): "
             f"{failure.describe()}."]
    apt, dnf, unknown = install_lines(failure.missing)
    if apt or dnf:
        lines.append("Install the missing system libraries:")
        if apt:
            lines.append(f"  {apt}    # Debian, Ubuntu")
        if dnf:
            lines.append(f"  {dnf}    # Fedora, RHEL")
    if unknown:
        lines.append(f"No package is known here for {', '.join(unknown)}: install what provides it.")
    if not failure.missing:
        lines.append(f"The loader said: {failure.error}")
    lines.append("Without a desktop, QT_QPA_PLATFORM=offscreen runs --screenshot and --doctor.")
    return "\n".join(lines)


def plugin_failure(platform: str) -> LoadFailure | None:
    """Why the platform plugin ``platform`` does not load (xcb and wayland, on Linux); None when it
    does, or when it is not where the PySide6 wheel puts it (then Qt reports for itself)."""
    if platform not in ("xcb", "wayland") or not sys.platform.startswith("linux"):
        return None
    plugin = platform_plugin(platform)
    return load_failure(plugin) if plugin.is_file() else None


def one_line(failure: LoadFailure) -> str:
    """The libraries and the install lines in one line (for ``--doctor``)."""
    apt, dnf, unknown = install_lines(failure.missing)
    fixes = [f for f in (apt, dnf) if f] + ([f"find what provides {', '.join(unknown)}"] if unknown else [])
    return f"{failure.path.name} does not load: {failure.describe()}" + (f"; fix: {' | '.join(fixes)}" if fixes else "")


def platform_problem(environ: Mapping[str, str] | None = None) -> str:
    """'' when Qt's platform plugin should start here; else the message that says what to install.

    Checked on Linux for xcb and wayland (the plugins that need system libraries) before Qt aborts.
    """
    env = os.environ if environ is None else environ
    platform = qt_platform(env)
    if ";" in env.get("QT_QPA_PLATFORM", "") or (platform == "wayland" and not env.get("QT_QPA_PLATFORM")):
        return ""  # Qt has another platform to fall back on: let it try
    failure = plugin_failure(platform)
    if failure is not None:
        return xcb_message(failure, platform)
    if platform == "xcb" and not env.get("DISPLAY"):
        return ("mammo-review: no X display (DISPLAY is not set): start it from a desktop session, "
                "or use QT_QPA_PLATFORM=offscreen for --screenshot and --doctor.")
    return ""
