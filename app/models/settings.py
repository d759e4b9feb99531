"""The app's persistent settings: a QSettings INI file behind typed properties.

``Settings(path)`` writes to that file (tests pass a tmp_path); ``Settings()`` uses the user's
configuration folder. Folders default to the platform's config / cache locations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from inference.labels.store import default_store_path

__all__ = ["Settings", "DEVICES", "MAX_RECENT", "default_settings_path"]

DEVICES = ("auto", "cpu", "cuda")
MAX_RECENT = 10
_ORG = "mammo-review"


def _location(kind: QStandardPaths.StandardLocation) -> Path:
    base = QStandardPaths.writableLocation(kind)
    return Path(base) if base else Path.home() / f".{_ORG}"


def default_settings_path() -> Path:
    return _location(QStandardPaths.StandardLocation.AppConfigLocation) / "mammo-review.ini"


class Settings:
    """Typed access to the settings file; every setter writes through at once."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_settings_path()
        self._q = QSettings(str(self.path), QSettings.Format.IniFormat)

    # -- generic helpers
    def _str(self, name: str, default: str = "") -> str:
        value = self._q.value(name, default)
        return default if value is None else str(value)

    def _float(self, name: str, default: float) -> float:
        try:
            return float(self._q.value(name, default))  # type: ignore[arg-type]  # QSettings values are untyped; bad ones raise
        except (TypeError, ValueError):
            return default

    def _bool(self, name: str, default: bool) -> bool:
        value = self._q.value(name, default)
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes")
        return bool(value)

    def _set(self, name: str, value: object) -> None:
        self._q.setValue(name, value)
        self._q.sync()

    # -- user and model
    @property
    def annotator(self) -> str:
        return self._str("user/annotator")

    @annotator.setter
    def annotator(self, value: str) -> None:
        self._set("user/annotator", value.strip())

    @property
    def device(self) -> str:
        value = self._str("model/device", "auto")
        return value if value in DEVICES else "auto"

    @device.setter
    def device(self, value: str) -> None:
        if value not in DEVICES:
            raise ValueError(f"unknown device {value!r}; choose one of {', '.join(DEVICES)}")
        self._set("model/device", value)

    @property
    def model_path(self) -> str:
        """A model file to use instead of the bundled one ("" = bundled)."""
        return self._str("model/path")

    @model_path.setter
    def model_path(self, value: str) -> None:
        self._set("model/path", value)

    @property
    def operating_point(self) -> float | None:
        """The malignancy threshold the user chose; None = the model's default."""
        value = self._q.value("model/operating_point", None)
        try:
            return None if value in (None, "") else float(value)  # type: ignore[arg-type]  # untyped QSettings value
        except (TypeError, ValueError):
            return None

    @operating_point.setter
    def operating_point(self, value: float | None) -> None:
        self._set("model/operating_point", "" if value is None else float(value))

    # -- folders
    @property
    def cache_dir(self) -> Path:
        value = self._str("paths/cache_dir")
        return Path(value) if value else _location(QStandardPaths.StandardLocation.CacheLocation) / "predictions"

    @cache_dir.setter
    def cache_dir(self, value: str | Path) -> None:
        self._set("paths/cache_dir", str(value))

    @property
    def store_path(self) -> Path:
        """The label store (written by the label panel)."""
        value = self._str("paths/store")
        # The same default as the headless tools, so the app and the CLI share one store.
        return Path(value) if value else default_store_path()

    @store_path.setter
    def store_path(self, value: str | Path) -> None:
        self._set("paths/store", str(value))

    # -- recent files
    @property
    def recent_paths(self) -> list[str]:
        value: Any = self._q.value("recent/paths", [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in (value or [])][:MAX_RECENT]

    def add_recent(self, paths: list[str]) -> None:
        """Put ``paths`` (one opening) at the top of the recent list."""
        entry = "|".join(str(p) for p in paths)
        items = [entry] + [p for p in self.recent_paths if p != entry]
        self._set("recent/paths", items[:MAX_RECENT])

    def clear_recent(self) -> None:
        self._set("recent/paths", [])

    @property
    def first_run(self) -> bool:
        return self._bool("app/first_run", True)

    @first_run.setter
    def first_run(self, value: bool) -> None:
        self._set("app/first_run", bool(value))

    # -- display
    @property
    def overlay_opacity(self) -> float:
        return min(1.0, max(0.0, self._float("display/overlay_opacity", 0.5)))

    @overlay_opacity.setter
    def overlay_opacity(self, value: float) -> None:
        self._set("display/overlay_opacity", float(value))

    @property
    def layout(self) -> str:
        return self._str("display/layout", "hanging")

    @layout.setter
    def layout(self, value: str) -> None:
        self._set("display/layout", value)

    # -- window
    @property
    def window_geometry(self) -> QByteArray:
        value = self._q.value("window/geometry", QByteArray())
        return value if isinstance(value, QByteArray) else QByteArray()

    @window_geometry.setter
    def window_geometry(self, value: QByteArray) -> None:
        self._set("window/geometry", value)

    @property
    def window_state(self) -> QByteArray:
        value = self._q.value("window/state", QByteArray())
        return value if isinstance(value, QByteArray) else QByteArray()

    @window_state.setter
    def window_state(self, value: QByteArray) -> None:
        self._set("window/state", value)

    def value(self, name: str, default: object = None) -> object:
        """Raw access for panels that keep a setting of their own (``<panel>/<name>``)."""
        return self._q.value(name, default)

    def set_value(self, name: str, value: object) -> None:
        self._set(name, value)
