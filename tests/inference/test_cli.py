"""``python -m inference predict``: rows, bad files, exit codes, embeddings and maps."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import inference.cli as cli
from inference.cli import CSV_COLUMNS, MAPS_INDEX_COLUMNS, main, map_stem
from inference.formats import read_embeddings
from inference.imaging.decode import load_image
from inference.model.predict import predict
from inference.model.session import ModelSession
from inference.phantoms.generator import write_non_image_dicom, write_png

SHAPE = (256, 192)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        return list(reader)


@pytest.fixture
def mixed_folder(phantom_study: list[Path]) -> Path:
    """The 4-view phantom study plus an empty file, a truncated DICOM and random bytes."""
    folder = phantom_study[0].parent
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "truncated.dcm").write_bytes(phantom_study[0].read_bytes()[:2000])
    (folder / "noise.dcm").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return folder


def test_predict_a_folder_with_good_and_bad_files(
    mixed_folder: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, emb, maps = tmp_path / "p.csv", tmp_path / "z.npz", tmp_path / "maps"
    code = main(["predict", str(mixed_folder), "--out", str(out), "--model", str(tiny_model),
                 "--device", "cpu", "--embeddings", str(emb), "--maps", str(maps)])  # fmt: skip
    stderr = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in stderr
    assert "3 failed" in stderr

    rows = _rows(out)
    images = [r for r in rows if r["level"] == "image"]
    bad = {Path(r["path"]).name: r for r in images if r["status"] == "error"}
    assert set(bad) == {"empty.dcm", "truncated.dcm", "noise.dcm"}
    assert all(r["error"] for r in bad.values())
    assert "empty" in bad["empty.dcm"]["error"]
    assert all(r["p_malignant"] == "" for r in bad.values())

    ok = [r for r in images if r["status"] == "ok"]
    assert [Path(r["path"]).name for r in ok] == ["IM1.dcm", "IM2.dcm", "IM3.dcm", "IM4.dcm"]
    assert [(r["laterality"], r["view"]) for r in ok] == [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]
    for r in ok:
        assert r["key"].startswith("1.") and r["model_version"] == "test-0" and r["error"] == ""
        assert r["laterality_source"] == "tag" and r["view_source"] == "tag"
        for group in (
            ["p_acr_1", "p_acr_2", "p_acr_3", "p_acr_4", "p_acr_5", "p_acr_6"],
            ["p_density_A", "p_density_B", "p_density_C", "p_density_D"],
            ["p_view_CC", "p_view_MLO"],
        ):
            assert sum(float(r[c]) for c in group) == pytest.approx(1.0, abs=1e-4)
        assert 0.0 <= float(r["p_malignant"]) <= 1.0 and float(r["p_malignant_std"]) > 0.0

    breasts = [r for r in rows if r["level"] == "breast"]
    study = ok[0]["study_uid"]
    assert [r["key"] for r in breasts] == [f"{study}/R", f"{study}/L"]
    for b in breasts:
        views = [r for r in ok if r["laterality"] == b["laterality"]]
        top = max(views, key=lambda r: float(r["p_malignant"]))
        assert (b["p_malignant"], b["p_malignant_std"], b["p_acr_4"], b["path"]) == (
            top["p_malignant"], top["p_malignant_std"], top["p_acr_4"], top["path"]
        )
        mean_b = np.mean([float(r["p_density_B"]) for r in views])
        assert float(b["p_density_B"]) == pytest.approx(mean_b, abs=2e-6)
        assert b["view"] == "" and b["p_view_CC"] == ""
    (exam,) = [r for r in rows if r["level"] == "exam"]
    assert exam["key"] == study
    assert float(exam["p_malignant"]) == max(float(r["p_malignant"]) for r in ok)

    z = read_embeddings(emb)
    assert list(z.keys) == [r["key"] for r in ok]
    assert z.z.shape == (4, 496) and z.model_version == "test-0"
    assert list(z.meta["laterality"]) == ["R", "L", "R", "L"]
    assert list(z.meta["view"]) == ["CC", "CC", "MLO", "MLO"]
    assert set(z.meta["source"]) == {mixed_folder.name}

    with open(maps / "index.csv", newline="", encoding="utf-8") as f:
        index = list(csv.DictReader(f))
    assert [i["key"] for i in index] == [r["key"] for r in ok]
    for i in index:
        assert tuple(i) == MAPS_INDEX_COLUMNS
        for kind in ("evidence", "error"):
            m = np.load(maps / i[kind])
            assert m.dtype == np.float16 and m.shape == SHAPE == (int(i["rows"]), int(i["cols"]))
            assert np.isfinite(m).all() and np.abs(m).max() > 0
        with Image.open(maps / i["preview"]) as im:
            assert im.mode == "RGB" and im.height == SHAPE[0] and im.width > 2 * SHAPE[1]

    # the stored maps are the prediction's own, on the original grid
    session = ModelSession.load(tiny_model, device="cpu")
    (pred,) = predict(session, [load_image(ok[0]["path"])])
    first = index[0]
    evidence = np.load(maps / first["evidence"]).astype(np.float32) / float(first["evidence_scale"])
    expected = pred.evidence_original()
    assert expected is not None and pred.evidence is not None
    assert float(first["evidence_scale"]) == pred.evidence.size
    np.testing.assert_allclose(evidence, expected, atol=2e-3 * float(np.abs(expected).max()))
    error = np.load(maps / first["error"]).astype(np.float32)
    np.testing.assert_allclose(error, pred.error_map_original(), atol=1e-3)


def test_all_good_files_exit_zero_and_png_without_uids(
    tmp_path: Path, tiny_model: Path, phantom_study: list[Path]
) -> None:
    from inference.phantoms.generator import PhantomSpec, render

    folder = tmp_path / "pngs"
    write_png(folder / "left.png", render(PhantomSpec("L", "MLO", shape=SHAPE, seed=1)))
    write_non_image_dicom(folder / "report.dcm")
    out = tmp_path / "p.csv"
    command = ["predict", str(folder), str(phantom_study[1]), "--out", str(out), "--model", str(tiny_model), "--quiet"]
    assert main(command) == 0
    rows = _rows(out)
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert [Path(r["path"]).name for r in skipped] == ["report.dcm"] and skipped[0]["error"]
    png = [r for r in rows if r["level"] == "image" and r["path"].endswith("left.png")]
    assert len(png) == 1 and png[0]["status"] == "ok" and png[0]["key"].startswith("sha256:")
    assert png[0]["laterality"] == "L"
    assert len([r for r in rows if r["level"] == "exam"]) == 2


def test_a_model_error_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.onnx"
    assert main(["predict", str(tmp_path), "--out", str(tmp_path / "p.csv"), "--model", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: model file not found" in err and "Traceback" not in err
    assert not (tmp_path / "p.csv").exists()


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--out", "x.csv", "--batch-size", "0"]) == 2
    assert "0 is not positive" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--out", "x.csv", "--device", "gpu"]) == 2
    assert main([]) == 2
    assert main(["frobnicate"]) == 2


def test_an_empty_folder_is_reported(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    assert main(["predict", str(tmp_path / "in"), "--out", str(tmp_path / "p.csv"), "--model", str(tiny_model)]) == 1
    assert "no image found" in capsys.readouterr().err


def test_an_unexpected_error_exits_3_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*_: object) -> int:
        raise RuntimeError("kaput")

    monkeypatch.setattr(cli, "run_predict", boom)
    assert main(["predict", str(tmp_path), "--out", str(tmp_path / "p.csv")]) == 3
    err = capsys.readouterr().err
    assert "unexpected error: RuntimeError: kaput" in err and "Traceback" not in err


def test_an_unwritable_output_is_a_clear_error(
    tmp_path: Path, tiny_model: Path, phantom_study: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "p.csv"
    assert main(["predict", str(phantom_study[0]), "--out", str(out), "--model", str(tiny_model)]) == 2
    err = capsys.readouterr().err
    assert "cannot write the predictions" in err and str(out) in err


def test_phantom_subcommand_delegates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["phantom", str(tmp_path / "ph"), "--rows", "128", "--cols", "96"]) == 0
    assert len(list((tmp_path / "ph").rglob("*.dcm"))) == 4


def test_map_stems_are_safe_file_names() -> None:
    assert map_stem("1.2.840.1") == "1.2.840.1"
    assert map_stem("sha256:abc") == "sha256_abc"
    assert map_stem("../../etc/passwd") == "etc_passwd"
    assert map_stem("...") == "image"


def test_the_module_runs_as_a_program(mixed_folder: Path, tiny_model: Path, tmp_path: Path) -> None:
    """The real entry point: exit code 1 for the bad files, no traceback, a progress bar on stderr."""
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    proc = subprocess.run(
        [sys.executable, "-m", "inference", "predict", str(mixed_folder), "--out", str(tmp_path / "p.csv"),
         "--model", str(tiny_model)],  # fmt: skip
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "predict [##############################] 4/4" in proc.stderr
    assert proc.stdout == ""
    assert len(_rows(tmp_path / "p.csv")) == 3 + 4 + 2 + 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_on_a_terminal_and_prints_one_line_otherwise() -> None:
    tty = _Terminal()
    bar = cli.ProgressBar(tty, "predict", width=10)
    bar(0, 4)
    bar(4, 4)
    bar(4, 4)  # a repeated final call adds nothing
    text = tty.getvalue()
    assert text.startswith("\rpredict [----------] 0/4")
    assert "\rpredict [##########] 4/4" in text and text.endswith("\n") and text.count("\n") == 1
    log = io.StringIO()
    bar = cli.ProgressBar(log, "predict", width=10)
    for i in range(5):
        bar(i, 4)
    assert log.getvalue().startswith("predict [##########] 4/4") and "\r" not in log.getvalue()
    assert log.getvalue().count("\n") == 1
