"""The label export's de-identification (issue 13): the one PS3.15 Basic Profile implementation against
the standard's Table E.1-1, pixels outside the breast blanked before BurnedInAnnotation=NO, text that
reaches the breast flagged in the export report, export names that never collide silently."""

from __future__ import annotations

import csv
import io
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from inference.imaging.confidentiality import MAMMOGRAPHY_DESCRIPTORS
from inference.labels import cli as labels_cli
from inference.labels.exchange import ExportResult, export_labels
from inference.labels.store import LabelStore
from inference.phantoms import generator as phantom

from ..imaging.test_confidentiality import _concrete, _fill, _strings, _vr

SHAPE = (240, 180)
NESTED = 0x00540220  # View Code Sequence: not in the table, kept, its items de-identified
NUMERIC = ("US", "SS", "UL", "SL", "FL", "FD", "DS", "IS", "SQ", "AT")


@dataclass(frozen=True)
class Image:
    key: str
    path: Path
    kind: str = "dicom"
    patient_id: str = "P-001"
    study_uid: str = ""
    laterality: str = "R"


def _phantom_dicom(path: Path, *, markers: bool = True, seed: int = 9) -> tuple[Path, phantom.PhantomTruth]:
    spec = phantom.PhantomSpec("R", "CC", shape=SHAPE, seed=seed, markers=markers)
    image, truth = phantom.render_with_truth(spec)
    phantom.write_dicom(path, image, spec=spec)
    return path, truth


def _export(tmp_path: Path, images: list[Image], name: str = "export") -> tuple[ExportResult, LabelStore]:
    store = LabelStore(tmp_path / f"{name}.sqlite")
    for im in images:
        store.set_label(im.key, "density", "B", 0.8, annotator="dr-a")
    return export_labels(store, images, tmp_path / name), store


def _report(result: ExportResult) -> dict[str, dict[str, str]]:
    with open(result.folder / "deidentification.csv", newline="", encoding="utf-8") as f:
        return {row["key"]: row for row in csv.DictReader(f)}


def test_exported_dicom_keeps_no_table_attribute_the_profile_removes(tmp_path: Path) -> None:
    rows = [r for r in _concrete() if r["id"][:4] not in ("0000", "0002")]  # command and file meta groups aside
    path, _ = _phantom_dicom(tmp_path / "all-attributes.dcm")
    ds = dcmread(path)
    keep = {k: ds[k].value for k in ("Rows", "Columns", "PixelData")}
    _fill(ds, rows, with_sequences=True)  # every attribute of Table E.1-1 with a secret value ...
    nested = Dataset()
    _fill(nested, rows, with_sequences=False)
    ds.add_new(NESTED, "SQ", Sequence([nested]))  # ... and again inside a sequence the table does not name
    for k, v in keep.items():
        setattr(ds, k, v)
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "MG", "MONOCHROME2", 1
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = phantom.MG_FOR_PRESENTATION
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.77"
    ds.BurnedInAnnotation = "YES"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the secret values do not all fit their VRs
        ds.save_as(path, enforce_file_format=True)
    original = dcmread(path)
    result, store = _export(tmp_path, [Image(str(ds.SOPInstanceUID), path)])
    assert not result.problems, result.problems
    (exported,) = (result.folder / "images").glob("*.dcm")
    out = dcmread(exported)
    removed = [r for r in rows if r["basicProfile"] == "X" and _vr(int(r["id"], 16)) not in ("DA", "DT", "TM")
               and int(r["id"], 16) not in MAMMOGRAPHY_DESCRIPTORS]
    assert len(removed) > 250
    for where, before, after in (("top", original, out), ("nested", original[NESTED][0], out[NESTED][0])):
        assert sum(int(r["id"], 16) in before for r in removed) > 200, where  # they were there
        kept = [r["tag"] + " " + r["name"] for r in removed if int(r["id"], 16) in after]
        assert not kept, f"{where}: kept {kept}"
        assert not any(e.tag.is_private for e in after)
    # no original value of a table attribute survives anywhere in the file (times of day stay: Modified Dates)
    table = {int(r["id"], 16) for r in rows}
    flat = {s for e in out for s in _strings(e.value)}
    leaked = [
        (str(e.tag), s) for e in original if int(e.tag) in table and e.VR not in (*NUMERIC, "TM")
        for s in _strings(e.value) if s in flat
    ]
    assert not leaked
    assert out.PatientIdentityRemoved == "YES" and out.BurnedInAnnotation == "NO"
    codes = {i.CodeValue for i in out.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113105", "113107"}  # the profile, Clean Descriptors, Modified Dates
    assert out.SOPInstanceUID.startswith("2.25.") and exported.name == f"{out.SOPInstanceUID}.dcm"
    assert store.resolve_pseudonym(out.SOPInstanceUID) == "1.2.826.0.1.3680043.2.1125.77"
    store.close()


def test_pixels_outside_the_breast_are_blanked_before_burned_in_annotation_no(tmp_path: Path) -> None:
    path, truth = _phantom_dicom(tmp_path / "marker.dcm")
    assert truth.markers and dcmread(path).BurnedInAnnotation == "YES"
    before = dcmread(path).pixel_array
    y0, x0, y1, x1 = truth.markers[0]
    assert before[y0:y1, x0:x1].max() > 3000  # the burned-in marker
    result, store = _export(tmp_path, [Image(str(dcmread(path).SOPInstanceUID), path)])
    (exported,) = (result.folder / "images").glob("*.dcm")
    out = dcmread(exported)
    after = out.pixel_array
    assert out.BurnedInAnnotation == "NO"
    assert after[y0:y1, x0:x1].max() == before.min()  # the marker is gone
    b0, b1, b2, b3 = truth.breast_bbox
    inside = slice(b0 + 10, b2 - 10), slice(b1 + 10, b3 - 10)
    np.testing.assert_array_equal(after[inside], before[inside])  # the breast is untouched
    (row,) = _report(result).values()
    assert row["pixels_blanked"] == "yes" and int(row["text_outside_breast"]) >= 1
    assert row["text_touches_breast"] == "no" and row["burned_in_annotation"] == "NO"
    assert result.flagged == ()
    store.close()


def test_text_reaching_the_breast_is_flagged_in_the_export_report(tmp_path: Path) -> None:
    path, truth = _phantom_dicom(tmp_path / "label.dcm", markers=False, seed=9)
    ds = dcmread(path)
    stored = ds.pixel_array.copy()
    y0, x0, y1, x1 = truth.breast_bbox
    mid = (y0 + y1) // 2
    col = x1 if x1 < stored.shape[1] - 40 else x0 - 1
    step = 1 if col == x1 else -1
    edge = col
    while 0 < edge < stored.shape[1] - 1 and stored[mid, edge] > stored.min() + 200:
        edge += step
    lo, hi = sorted((edge - 8 * step, edge + 30 * step))
    stored[mid - 6 : mid + 6, lo:hi] = 4095  # a label laid across the skin line
    ds.PixelData = stored.tobytes()
    ds.save_as(path)
    other, _ = _phantom_dicom(tmp_path / "clean.dcm", seed=3)
    images = [Image(str(dcmread(p).SOPInstanceUID), p) for p in (path, other)]
    result, store = _export(tmp_path, images)
    (flagged,) = result.flagged
    assert store.resolve_pseudonym(flagged) == images[0].key
    report = _report(result)
    assert report[flagged]["text_touches_breast"] == "yes"
    assert [k for k, r in report.items() if r["text_touches_breast"] == "yes"] == [flagged]
    readme = (result.folder / "README.txt").read_text(encoding="utf-8")
    assert "CHECK these 1 image(s)" in readme and report[flagged]["image"] in readme
    store.remember_images(images)  # the command line exports what the store last saw
    err = io.StringIO()
    labels_cli.main(["export", str(tmp_path / "cli"), "--store", str(store.path)], out=io.StringIO(), err=err)
    assert "CHECK 1 image(s): burned-in text reaches the breast" in err.getvalue()
    store.close()


def test_export_names_never_collide_silently(tmp_path: Path) -> None:
    first, _ = _phantom_dicom(tmp_path / "a.dcm")
    copy = tmp_path / "b.dcm"
    shutil.copyfile(first, copy)  # the same SOP instance under another key (a copy elsewhere)
    png = tmp_path / "c.png"
    phantom.write_png(png, phantom.render(phantom.PhantomSpec("L", "CC", shape=SHAPE, seed=1)))
    twin = tmp_path / "d.png"
    shutil.copyfile(png, twin)
    images = [
        Image(str(dcmread(first).SOPInstanceUID), first),
        Image("copy-of-a", copy),
        Image("sha256:c", png, kind="png"),
        Image("sha256:d", twin, kind="png"),
    ]
    result, store = _export(tmp_path, images)
    assert result.rows == 2
    # the two DICOM copies run in parallel workers: either may take the name first, the other fails
    names = sorted(p.path.name for p in result.problems)
    assert names in (["a.dcm", "d.png"], ["b.dcm", "d.png"])
    assert all("is taken" in p.reason and "not overwritten" in p.reason for p in result.problems)
    assert len(list((result.folder / "images").iterdir())) == 2
    store.close()


def test_a_decoder_panic_is_that_files_problem_and_the_export_goes_on(tmp_path: Path) -> None:
    from inference.phantoms import hostile  # noqa: PLC0415

    panic = hostile.panic_rle(tmp_path / "panic.dcm")  # 16 x 16 RLE: the Rust decoder panics on it
    good, _ = _phantom_dicom(tmp_path / "good.dcm")
    images = [Image(str(dcmread(p).SOPInstanceUID), p) for p in (panic, good)]
    result, store = _export(tmp_path, images)
    assert result.rows == 1
    (problem,) = result.problems
    assert problem.path == panic and "cannot export" in problem.reason and "panicked" in problem.reason
    assert len(list((result.folder / "images").iterdir())) == 1
    store.close()
