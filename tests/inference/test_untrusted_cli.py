"""Issue 13's "done when": hostile files beside good ones through ``python -m inference predict``.

A panicking RLE frame, an RLE bomb, a deflate bomb, a 65535^2 claim and a file with formulas and
path traversals in its text and UIDs, beside two good phantoms: exit 1, one row with a reason per
bad file, the good ones (and the hostile-text one, whose pixels are fine) predicted, nothing but the
progress on stderr, no CSV cell a spreadsheet would run, nothing written outside the output folders.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference.cli import CSV_TEXT_COLUMNS, EXIT_FAILED
from inference.csvsafe import FORMULA_PREFIXES, SafeDictReader
from inference.phantoms import generator as phantom
from inference.phantoms.hostile import FORMULAS, TRAVERSAL, hostile_folder


def _tree(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and skip not in p.parents
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("untrusted")
    inputs = root / "in"
    inputs.mkdir()
    good = []
    for n, side in enumerate(("R", "L")):
        spec = phantom.PhantomSpec(side, "CC", shape=(256, 192), seed=n + 1)
        good.append(phantom.write_dicom(inputs / f"good-{side}.dcm", phantom.render(spec), spec=spec))
    bad = hostile_folder(inputs, good[0], deflate_mb=96)
    cwd = root / "work" / "a" / "b"  # the traversals climb four levels from the maps folder: stay inside root
    cwd.mkdir(parents=True)
    out = cwd / "out"
    before = _tree(root, out)
    env = {**os.environ, "MAMMO_MAX_INFLATED_MB": "64", "PYTHONWARNINGS": "always"}
    proc = subprocess.run(
        [sys.executable, "-m", "inference", "predict", str(inputs), "--out", "out/predictions.csv",
         "--maps", "out/maps", "--embeddings", "out/z.npz", "--device", "cpu", "--workers", "2"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return {"proc": proc, "root": root, "out": out, "before": before, "good": good, "bad": bad}


def test_exit_code_and_a_clean_terminal(run: dict[str, object]) -> None:
    proc = run["proc"]
    assert isinstance(proc, subprocess.CompletedProcess)
    assert proc.returncode == EXIT_FAILED, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr and "panicked at" not in proc.stderr
    assert proc.stdout == ""
    assert "5 image(s), 4 failed" in proc.stderr  # the claim and the deflate bomb are refused at the scan


def test_a_row_with_a_reason_for_each_bad_file_and_the_good_ones_predicted(run: dict[str, object]) -> None:
    out, bad, good = run["out"], run["bad"], run["good"]
    assert isinstance(out, Path) and isinstance(bad, dict) and isinstance(good, list)
    with open(out / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in SafeDictReader(f, CSV_TEXT_COLUMNS) if r["level"] == "image"]
    by_path = {Path(r["path"]).name: r for r in rows}
    assert len(rows) == len(by_path) == 7
    reasons = {
        "panic": "the decoder panicked",
        "rle_bomb": "over the limit of 120000000 (raise it with MAMMO_MAX_PIXELS or --max-pixels)",
        "deflate_bomb": "inflates to over 64 MB (the inflated-size limit; raise it with MAMMO_MAX_INFLATED_MB",
        "claim": "truncated pixel data",
    }
    for name, reason in reasons.items():
        row = by_path[bad[name].name]
        assert row["status"] == "error" and reason in row["error"], row
    for path in [*good, bad["formulas"]]:
        row = by_path[path.name]
        assert row["status"] == "ok" and float(row["p_malignant"]) >= 0.0, row
    hostile = by_path[bad["formulas"].name]
    assert hostile["patient_id"] == FORMULAS["PatientID"]  # restored exactly by the reader
    assert hostile["key"] == TRAVERSAL + "/sop"


def test_no_cell_a_spreadsheet_would_run(run: dict[str, object]) -> None:
    out = run["out"]
    assert isinstance(out, Path)
    for name in ("predictions.csv", "maps/index.csv"):
        with open(out / name, newline="", encoding="utf-8") as f:
            cells = [cell for row in csv.reader(f) for cell in row]
        assert cells and not [c for c in cells if c.startswith(FORMULA_PREFIXES)], name


def test_nothing_written_outside_the_output_folders(run: dict[str, object]) -> None:
    root, out, before = run["root"], run["out"], run["before"]
    assert isinstance(root, Path) and isinstance(out, Path)
    assert _tree(root, out) == before
    assert not list(root.rglob("escaped"))  # neither a file nor a folder by the traversal's name
    written = {p.name for p in (out / "maps").iterdir()}
    assert "index.csv" in written and all("/" not in n and not n.startswith(".") for n in written)
    assert {p.name for p in out.iterdir()} == {"predictions.csv", "maps", "z.npz"}


def test_verbose_shows_the_warnings_the_default_keeps_off_the_terminal(run: dict[str, object], tmp_path: Path) -> None:
    bad = run["bad"]
    assert isinstance(bad, dict)
    env = {**os.environ, "PYTHONWARNINGS": "always"}
    command = [sys.executable, "-m", "inference", "predict", str(bad["formulas"]), "--out", str(tmp_path / "p.csv"),
               "--device", "cpu", "--workers", "1", "--quiet"]  # fmt: skip
    quiet = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    verbose = subprocess.run([*command, "--verbose"], env=env, capture_output=True, text=True, timeout=600)
    assert quiet.returncode == verbose.returncode == 0, verbose.stderr
    assert quiet.stderr == ""
    assert "UserWarning: Invalid value for VR UI" in verbose.stderr  # pydicom's, through the log


def test_the_pacs_reader_restores_the_columns_the_cli_neutralises() -> None:
    from inference.cli import MAPS_INDEX_TEXT_COLUMNS
    from inference.pacs import findings

    assert set(findings.PREDICTION_TEXT_COLUMNS) == CSV_TEXT_COLUMNS
    assert set(findings.MAPS_INDEX_TEXT_COLUMNS) == MAPS_INDEX_TEXT_COLUMNS


def test_copies_of_one_sop_instance_each_keep_a_row_and_the_readable_one_is_predicted(tmp_path: Path) -> None:
    """The first-sorted copy panics in the decoder: the intact copy is predicted, the others say so."""
    from pydicom import dcmread

    from inference.cli import main
    from inference.phantoms.hostile import panic_rle

    folder = tmp_path / "in"
    spec = phantom.PhantomSpec("R", "CC", shape=(256, 192), seed=4)
    intact = phantom.write_dicom(folder / "b-intact.dcm", phantom.render(spec), spec=spec)
    same = dcmread(intact, stop_before_pixels=True)
    corrupt = panic_rle(folder / "a-corrupt.dcm")
    ds = dcmread(corrupt)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = same.SOPInstanceUID
    ds.StudyInstanceUID, ds.PatientID = same.StudyInstanceUID, same.PatientID
    ds.save_as(corrupt)
    (folder / "c-copy.dcm").write_bytes(intact.read_bytes())
    out = tmp_path / "p.csv"
    assert main(["predict", str(folder), "--out", str(out), "--device", "cpu", "--workers", "1", "--quiet"]) == 0
    with open(out, newline="", encoding="utf-8") as f:
        rows = {Path(r["path"]).name: r for r in SafeDictReader(f, CSV_TEXT_COLUMNS) if r["level"] == "image"}
    assert set(rows) == {"a-corrupt.dcm", "b-intact.dcm", "c-copy.dcm"}
    assert rows["b-intact.dcm"]["status"] == "ok" and rows["b-intact.dcm"]["p_malignant"]
    for name in ("a-corrupt.dcm", "c-copy.dcm"):
        assert rows[name]["status"] == "skipped"
        assert rows[name]["error"].startswith(f"same SOP instance as {intact}")
        assert rows[name]["key"] == rows["b-intact.dcm"]["key"]
    assert "(this copy: the decoder panicked" in rows["a-corrupt.dcm"]["error"]


@pytest.mark.slow
def test_mutated_files_through_predict_each_get_a_row_and_nothing_escapes(tmp_path: Path) -> None:
    """A few hundred mutated generated files (bytes flipped anywhere or in the pixel data, truncations)
    of every transfer syntax and the panicking frame: exit 0 or 1, one row per file, a clean terminal."""
    import numpy as np

    from inference.phantoms.hostile import panic_rle

    folder = tmp_path / "fuzz"
    folder.mkdir()
    spec = phantom.PhantomSpec("L", "MLO", shape=(64, 48), seed=11)
    image = phantom.render(spec)
    bases = [phantom.write_dicom(tmp_path / f"base-{s}.dcm", image, spec=spec, transfer_syntax=s).read_bytes()
             for s in ("explicit", "deflate", "rle", "jpeg2000", "jpegls", "jpeg-lossless")]  # fmt: skip
    bases.append(panic_rle(tmp_path / "base-panic.dcm").read_bytes())
    rng = np.random.default_rng(29)
    count = 210
    for i in range(count):
        data = bytearray(bases[i % len(bases)])
        kind = rng.integers(0, 4)
        if kind == 3:
            data = data[: int(rng.integers(132, len(data)))]
        else:
            start = 132 if kind == 0 else len(data) // 2
            for at in rng.integers(start, len(data), size=int(rng.integers(1, 9))):
                data[at] = int(rng.integers(0, 256))
        (folder / f"m{i:03d}.dcm").write_bytes(bytes(data))
    out = tmp_path / "p.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "inference", "predict", str(folder), "--out", str(out), "--device", "cpu",
         "--workers", "2", "--quiet"],
        env={**os.environ, "PYTHONWARNINGS": "always"}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stderr == "", proc.stderr[-2000:]
    with open(out, newline="", encoding="utf-8") as f:
        rows = [r for r in SafeDictReader(f, CSV_TEXT_COLUMNS) if r["level"] == "image"]
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in folder.iterdir())
    assert all(r["error"] for r in rows if r["status"] != "ok")
    assert any(r["status"] == "ok" for r in rows) and any(r["status"] == "error" for r in rows)


@pytest.mark.parametrize("variable", ["MAMMO_DECODE_WORKERS", "MAMMO_MAX_PIXELS"])
def test_a_malformed_limit_variable_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str
) -> None:
    from inference.cli import EXIT_USAGE, main

    monkeypatch.setenv(variable, "lots")
    argv = ["predict", str(tmp_path), "--out", str(tmp_path / "p.csv"), "--device", "cpu", "--quiet"]
    assert main(argv) == EXIT_USAGE
    assert f"{variable}='lots' is not a number" in capsys.readouterr().err
