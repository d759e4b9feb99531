"""``python -m inference deidentify``: a folder of good and hostile files gives pseudonymous files,
a report row per input, no overwrite, no formula cell, nothing written outside OUT but the report."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from inference.csvsafe import SafeDictReader, is_formula_safe
from inference.deidentify_cli import REPORT_COLUMNS, main
from inference.phantoms import generator as phantom
from inference.phantoms.hostile import panic_rle, write_deflate_bomb

FORMULA_ID = '=HYPERLINK("http://x","y")'


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    spec = phantom.PhantomSpec("R", "CC", shape=(160, 120), seed=3)
    image = phantom.render(spec)
    out = {
        "plain": phantom.write_dicom(folder / "a.dcm", image, spec=spec, patient_id=FORMULA_ID,
                                     patient_name="Doe^Jane", study_date="20200315"),
        "rle": phantom.write_dicom(folder / "b.dcm", image, spec=spec, transfer_syntax="rle",
                                   patient_id="../../etc/passwd", patient_name="Doe^Jane"),
        "panic": panic_rle(folder / "c.dcm"),
        "sr": phantom.write_non_image_dicom(folder / "d.dcm"),
    }
    shutil.copy(out["plain"], folder / "e-copy.dcm")  # the same SOP instance twice
    out["copy"] = folder / "e-copy.dcm"
    (folder / "notes.txt").write_text("not dicom\n")
    out["text"] = folder / "notes.txt"
    return out


def _report(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    for line in csv.reader(text.splitlines()):
        assert all(is_formula_safe(cell) for cell in line), line
    rows = list(SafeDictReader(text.splitlines(), text_columns=("source", "output", "status", "reason")))
    return {Path(r["source"]).name: r for r in rows}


def test_a_hostile_folder(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    key = tmp_path / "secret.key"
    before = set(tmp_path.rglob("*"))
    code = main([str(tmp_path / "in"), str(out), "--key-file", str(key), "--workers", "2"])
    assert code == 1
    report = _report(tmp_path / "out-report.csv")
    assert set(report) == {"a.dcm", "b.dcm", "c.dcm", "d.dcm", "e-copy.dcm", "notes.txt"}
    assert list(next(iter(report.values()))) == list(REPORT_COLUMNS)
    for name in ("a.dcm", "b.dcm", "d.dcm"):
        assert report[name]["status"] == "ok", report[name]
        assert re.fullmatch(r"2\.25\.\d+\.dcm", report[name]["output"])
    assert report["c.dcm"]["status"] == "error" and "panicked" in report["c.dcm"]["reason"]
    assert report["e-copy.dcm"]["status"] == "error" and "is taken" in report["e-copy.dcm"]["reason"]
    assert report["notes.txt"]["status"] == "error"
    assert report["a.dcm"]["pixels_blanked"] == "yes" and report["a.dcm"]["burned_in_annotation"] == "NO"
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(report[n]["output"] for n in ("a.dcm", "b.dcm", "d.dcm"))
    after = set(tmp_path.rglob("*")) - before
    assert after == {out, key, tmp_path / "out-report.csv", *out.iterdir()}  # nothing else written
    for name in ("a.dcm", "b.dcm"):
        src = dcmread(inputs["plain" if name == "a.dcm" else "rle"])
        ds = dcmread(out / report[name]["output"])
        assert ds.PatientIdentityRemoved == "YES" and ds.BurnedInAnnotation == "NO"
        assert ds.PatientID != src.PatientID and "Doe" not in str(ds.PatientName)
        assert ds.SOPInstanceUID != src.SOPInstanceUID and ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.pixel_array.shape == src.pixel_array.shape
        assert int(ds.pixel_array.min()) == int(np.asarray(src.pixel_array).min())
        assert not np.array_equal(ds.pixel_array, src.pixel_array)  # the marker is gone
    # the same key: the same names, in another folder
    again = tmp_path / "again"
    assert main([str(inputs["plain"]), str(again), "--key-file", str(key), "--workers", "1"]) == 0
    assert [p.name for p in again.iterdir()] == [report["a.dcm"]["output"]]
    # into the same folder: refused for that file, the earlier export untouched
    mtime = (out / report["a.dcm"]["output"]).stat().st_mtime_ns
    assert main([str(inputs["plain"]), str(out), "--key-file", str(key), "--workers", "1",
                 "--report", str(tmp_path / "third.csv")]) == 1
    assert (out / report["a.dcm"]["output"]).stat().st_mtime_ns == mtime


def test_a_deflate_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMMO_MAX_INFLATED_MB", "16")
    bomb = write_deflate_bomb(tmp_path / "bomb.dcm", inflated_mb=64)
    assert main([str(bomb), str(tmp_path / "out"), "--workers", "1"]) == 1
    row = _report(tmp_path / "out-report.csv")["bomb.dcm"]
    assert row["status"] == "error" and "MAMMO_MAX_INFLATED_MB" in row["reason"]
    assert not any((tmp_path / "out").iterdir())


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "out")]) == 2
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    (tmp_path / "in").mkdir()
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), str(out), "--report", str(out / "r.csv")]) == 2
    assert "keep it out of the export folder" in capsys.readouterr().err


def test_a_formula_in_a_file_name_is_neutralised(inputs: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(inputs["sr"], tmp_path / "=SUM(A1).dcm")
    assert main(["=SUM(A1).dcm", "out", "--workers", "1"]) == 0
    raw = (tmp_path / "out-report.csv").read_text(encoding="utf-8").splitlines()[1]
    assert raw.startswith("'=SUM(A1).dcm,")
    assert _report(tmp_path / "out-report.csv")["=SUM(A1).dcm"]["status"] == "ok"


def test_a_big_endian_file_keeps_its_byte_order(tmp_path: Path) -> None:
    from pydicom.uid import ExplicitVRBigEndian

    from inference.phantoms.hostile import mg_dataset

    spec = phantom.PhantomSpec("L", "CC", shape=(160, 120), seed=5)
    stored = (phantom.render(spec) * 4095).astype(np.uint16)
    ds = mg_dataset(160, 120, 16, ExplicitVRBigEndian)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.PixelData = stored.astype(">u2").tobytes()
    ds["PixelData"].VR = "OW"
    big = tmp_path / "big.dcm"
    ds.save_as(big, enforce_file_format=True)
    assert np.array_equal(dcmread(big).pixel_array, stored)
    assert main([str(big), str(tmp_path / "out"), "--workers", "1"]) == 0
    (written,) = (tmp_path / "out").iterdir()
    out = dcmread(written)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    kept = out.pixel_array == stored
    assert kept.mean() > 0.5 and int(out.pixel_array.max()) <= int(stored.max())  # the breast, not byte-swapped
