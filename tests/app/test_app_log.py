"""The app's log: warnings go to mammo-review.log beside the settings, on the terminal only with --verbose."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.__main__ import _log_to_file


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.parametrize("verbose", [False, True])
def test_warnings_go_to_the_log_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None,
                                     verbose: bool) -> None:  # fmt: skip
    path = _log_to_file(tmp_path / "config", verbose)
    assert path == tmp_path / "config" / "mammo-review.log"
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a decoder's remark", UserWarning, stacklevel=1)
    for h in logging.getLogger().handlers:
        h.flush()
    assert "UserWarning: a decoder's remark" in path.read_text(encoding="utf-8")
    err = capsys.readouterr().err
    assert ("a decoder's remark" in err) == verbose
