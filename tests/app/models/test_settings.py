from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QByteArray

from app.models.settings import MAX_RECENT, Settings


def test_settings_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.ini"
    s = Settings(path)
    assert s.device == "auto" and s.first_run and s.operating_point is None
    s.device = "cuda"
    s.annotator = "  Dr Who "
    s.cache_dir = tmp_path / "c"
    s.store_path = tmp_path / "labels.sqlite"
    s.operating_point = 0.31
    s.overlay_opacity = 0.7
    s.layout = "mlo"
    s.first_run = False
    s.window_geometry = QByteArray(b"\x01\x02geometry")
    s.add_recent(["/a", "/b"])
    s.add_recent(["/c"])
    s.add_recent(["/a", "/b"])
    again = Settings(path)
    assert again.device == "cuda"
    assert again.annotator == "Dr Who"
    assert again.cache_dir == tmp_path / "c"
    assert again.store_path == tmp_path / "labels.sqlite"
    assert again.operating_point == pytest.approx(0.31)
    assert again.overlay_opacity == pytest.approx(0.7)
    assert again.layout == "mlo"
    assert again.first_run is False
    assert bytes(again.window_geometry.data()) == b"\x01\x02geometry"
    assert again.recent_paths == ["/a|/b", "/c"]
    assert path.is_file()


def test_recent_list_is_bounded_and_bad_device_refused(tmp_path: Path) -> None:
    s = Settings(tmp_path / "s.ini")
    for i in range(MAX_RECENT + 5):
        s.add_recent([f"/p{i}"])
    assert len(s.recent_paths) == MAX_RECENT
    assert s.recent_paths[0] == f"/p{MAX_RECENT + 4}"
    with pytest.raises(ValueError, match="unknown device"):
        s.device = "tpu"
    s.clear_recent()
    assert Settings(tmp_path / "s.ini").recent_paths == []
