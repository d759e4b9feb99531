"""Exports: contents, de-identification (no identifier in any byte), stable pseudonyms, identified
map, and idempotent imports between stores."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from pydicom import dcmread
from pydicom.dataset import Dataset

from inference.errors import FormatError
from inference.formats import LabelRow, TaskLabel, image_key, read_label_manifest, write_label_manifest
from inference.imaging.studies import StudySet, scan
from inference.labels.deidentify import deidentify_dataset, strip_jpeg
from inference.labels.exchange import export_labels, import_labels, import_manifest
from inference.labels.store import LabelEdit, LabelStore
from inference.phantoms.generator import PhantomSpec, render, write_dicom

NAME, PID, BIRTH = "Zqxwillow^Secretina", "PIDZQX7731", "19471203"
IDENTIFIERS = [b"Zqxwillow", b"Secretina", PID.encode(), BIRTH.encode(), b"1947-12-03", b"Hospital Zqx"]


def _dicom(path: Path, spec: PhantomSpec, study_uid: str, **kw: object) -> Path:
    write_dicom(
        path, render(spec), spec=spec, patient_name=NAME, patient_id=PID, birth_date=BIRTH,
        study_uid=study_uid, **kw,
    )
    ds = dcmread(path)
    ds.InstitutionName = "Hospital Zqx"
    ds.OtherPatientIDs = PID + "-OLD"
    ds.PerformingPhysicianName = "Dr^Zqxwillow"
    block = ds.private_block(0x0011, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", f"{NAME} {PID}")
    ds.save_as(path)
    return path


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    folder = tmp_path / f"{PID} {NAME}"  # identifiers in folder and file names too
    folder.mkdir()
    shape = (192, 144)
    study = "1.2.826.0.1.3680043.99.1"
    _dicom(folder / f"{PID}_LCC.dcm", PhantomSpec("L", "CC", shape=shape, seed=1), study)
    _dicom(folder / f"{PID}_LMLO.dcm", PhantomSpec("L", "MLO", shape=shape, seed=2), study,
           transfer_syntax="rle", tags_mode="text_only")
    img = (render(PhantomSpec("R", "CC", shape=shape, seed=3)) * 255).astype("uint8")
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", f"{NAME} {PID} {BIRTH}")
    Image.fromarray(img).save(folder / f"{PID}_RCC.png", pnginfo=info)
    jpeg = folder / f"{PID}_RMLO.jpg"
    Image.fromarray(img).save(jpeg, "JPEG", quality=90, comment=f"{NAME} {PID}".encode())
    return folder


@pytest.fixture
def studies(study_dir: Path) -> StudySet:
    found = scan([study_dir])
    assert len(found.images) == 4, found.problems
    return found


@pytest.fixture
def store(tmp_path: Path, studies: StudySet) -> LabelStore:
    s = LabelStore(tmp_path / "store" / "labels.sqlite")
    keys = [r.key for r in studies.images]
    s.set_labels(
        [LabelEdit(keys[0], "malignancy", "malignant", 0.9), LabelEdit(keys[0], "density", "C", 0.8)], annotator="dr-a"
    )
    s.set_label(keys[0], "malignancy", "benign", 0.6, annotator="dr-b")
    s.set_label(keys[1], "view", "MLO", 1.0, annotator="dr-a")
    s.set_label(keys[2], "acr", None, 0.5, annotator="dr-a")  # unknown: an abstention
    s.set_label(keys[3], "density", "B", 0.7, annotator="dr-b")
    yield s
    s.close()


def _all_bytes(folder: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]


def test_export_is_deidentified_everywhere(tmp_path: Path, store: LabelStore, studies: StudySet) -> None:
    out = tmp_path / "export"
    result = export_labels(store, studies.images, out)
    assert result.problems == () and result.rows == 4 and not result.identified
    files = _all_bytes(out)
    assert {p.name for p, _ in files} >= {"manifest.csv", "manifest.json", "annotations.csv", "README.txt"}
    assert not (out / "original_paths.csv").exists()
    for path, data in files:
        low = data.lower()
        name = str(path.relative_to(out)).lower().encode()
        for ident in IDENTIFIERS:
            assert ident.lower() not in low, f"{ident!r} found in {path.relative_to(out)}"
            assert ident.lower() not in name
    readme = (out / "README.txt").read_text()
    assert "Burned-in text" in readme and "deidentification.csv" in readme and "Research use only" in readme


def test_export_manifest_reads_as_training_input(tmp_path: Path, store: LabelStore, studies: StudySet) -> None:
    out = tmp_path / "export"
    export_labels(store, studies.images, out)
    rows = {r.key: r for r in read_label_manifest(out / "manifest.csv")}
    assert len(rows) == 4
    originals = {r.key for r in studies.images}
    for row in rows.values():
        assert row.key not in originals
        image = out / row.image
        assert image.is_file() and not Path(row.image).is_absolute()
        sop = str(dcmread(image).SOPInstanceUID) if image.suffix == ".dcm" else None
        assert image_key(image, sop) == row.key  # the manifest key is the exported file's key
        assert row.patient.startswith("P-") or row.patient == ""
    by_image = {Path(r.image).suffix: r for r in rows.values()}
    assert {".dcm", ".png", ".jpg"} <= set(by_image)
    labelled = [r for r in rows.values() if r.label("malignancy").value is not None]
    (first,) = labelled
    # dr-a malignant 0.9 vs dr-b benign 0.6: malignant wins, u = 1 - 0.9 / 2
    assert first.label("malignancy") == TaskLabel("malignant", pytest.approx(0.55), "person")
    assert first.label("density") == TaskLabel("C", pytest.approx(0.2), "person")
    assert all(r.label("acr").value is None for r in rows.values())  # unknown stays missing
    with open(out / "annotations.csv", encoding="utf-8") as f:
        notes = list(csv.DictReader(f))
    assert len(notes) == 6 and {n["annotator"] for n in notes} == {"dr-a", "dr-b"}
    assert {n["key"] for n in notes} == set(rows)


def test_deidentified_dicom_attributes(tmp_path: Path, store: LabelStore, studies: StudySet) -> None:
    out = tmp_path / "export"
    export_labels(store, studies.images, out)
    dicoms = sorted((out / "images").glob("*.dcm"))
    assert len(dicoms) == 2
    ds = [dcmread(p) for p in dicoms]
    originals = [dcmread(r.path) for r in studies.images if r.kind == "dicom"]
    for d in ds:
        assert d.PatientIdentityRemoved == "YES" and "Profile" in d.DeidentificationMethod[0]
        assert d.PatientName == d.PatientID + "^" and str(d.PatientID).startswith("ANON")
        assert d.PatientBirthDate == "" and "OtherPatientIDs" not in d
        assert d.get("InstitutionName", "ANONYMIZED") == "ANONYMIZED"  # X/Z/D: a dummy where kept
        assert "PerformingPhysicianName" not in d and d.AccessionNumber == ""
        assert not any(e.tag.is_private for e in d)
        assert d.StudyDate != "20240115" and len(d.StudyDate) == 8
        assert d.LongitudinalTemporalInformationModified == "MODIFIED"
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert d.BurnedInAnnotation == "NO"  # the pixels outside the breast were blanked
        assert d.SOPClassUID == originals[0].SOPClassUID
        assert d.pixel_array.shape == (192, 144)
    # one study stays one study, under a new UID; the text-only view survives the clean-up
    assert ds[0].StudyInstanceUID == ds[1].StudyInstanceUID != originals[0].StudyInstanceUID
    assert ds[0].StudyDate == ds[1].StudyDate
    assert {o.SOPInstanceUID for o in originals}.isdisjoint({d.SOPInstanceUID for d in ds})
    assert "L MLO" in {str(d.get("SeriesDescription", "")) for d in ds}
    # the pixels: the same image, with the marker outside the breast set to the background
    by_sop = {o.SOPInstanceUID: o.pixel_array for o in originals}
    for d in ds:
        before = by_sop[store.resolve_pseudonym(d.SOPInstanceUID)]
        after = d.pixel_array
        changed = after != before
        assert changed.any() and (after[changed] == before.min()).all()
        assert changed.mean() < 0.5


def test_descriptor_with_free_text_is_removed() -> None:
    ds = Dataset()
    ds.PatientID = "X1"
    ds.PatientName = "Zqxwillow^Secretina"
    ds.StudyDescription = "MAMMO for Mrs Zqxwillow"
    ds.SeriesDescription = "R CC"
    ds.StudyDate = "20240229"
    deidentify_dataset(ds, b"k" * 32)
    assert "StudyDescription" not in ds and ds.SeriesDescription == "R CC"
    assert ds.StudyDate != "20240229" and ds.PatientName == ds.PatientID + "^" and ds.PatientID != "X1"


def test_pseudonyms_are_stable_across_exports(tmp_path: Path, store: LabelStore, studies: StudySet) -> None:
    a = export_labels(store, studies.images, tmp_path / "a")
    b = export_labels(store, studies.images, tmp_path / "b")
    rows_a = [(r.key, r.image, r.patient, r.study) for r in read_label_manifest(a.manifest)]
    rows_b = [(r.key, r.image, r.patient, r.study) for r in read_label_manifest(b.manifest)]
    assert rows_a == rows_b
    for p in (tmp_path / "a" / "images").iterdir():
        assert p.read_bytes() == (tmp_path / "b" / "images" / p.name).read_bytes()
    other = LabelStore(tmp_path / "other.sqlite")  # another store, another secret
    for lab in store.labels():
        other.set_label(lab.key, lab.task, lab.value, lab.confidence, annotator=lab.annotator)
    c = export_labels(other, studies.images, tmp_path / "c")
    dicom_keys = lambda res: {r.key for r in read_label_manifest(res.manifest) if r.image.endswith(".dcm")}  # noqa: E731
    assert dicom_keys(c).isdisjoint(dicom_keys(a))
    other.close()
    with pytest.raises(FormatError, match="new or empty"):
        export_labels(store, studies.images, tmp_path / "a")


def test_identified_export_maps_original_files(tmp_path: Path, store: LabelStore, studies: StudySet) -> None:
    out = tmp_path / "identified"
    result = export_labels(store, studies.images, out, identified=True)
    assert result.identified and not (out / "images").exists()
    with open(out / "original_paths.csv", encoding="utf-8") as f:
        mapping = {r["key"]: Path(r["original_path"]) for r in csv.DictReader(f)}
    assert mapping == {r.key: r.path.resolve() for r in studies.images}
    for row in read_label_manifest(out / "manifest.csv"):
        assert (out / row.image).resolve() == mapping[row.key]
    assert "IDENTIFIED" in (out / "README.txt").read_text()


def test_unreadable_image_is_reported_rest_exported(tmp_path: Path, store: LabelStore, studies: StudySet) -> None:
    broken = studies.images[1]
    broken.path.write_bytes(b"DICM gone")
    result = export_labels(store, studies.images, tmp_path / "out")
    assert result.rows == 3 and len(result.problems) == 1
    assert result.problems[0].path == broken.path and "cannot export" in result.problems[0].reason


def test_only_labelled_images_by_default(tmp_path: Path, store: LabelStore, studies: StudySet) -> None:
    unlabelled = LabelStore(tmp_path / "empty.sqlite")
    assert export_labels(unlabelled, studies.images, tmp_path / "none").rows == 0
    assert export_labels(unlabelled, studies.images, tmp_path / "all", only_labelled=False).rows == 4
    unlabelled.close()


def test_jpeg_strip_keeps_pixels() -> None:
    img = Image.new("L", (32, 16), 77)
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x013B] = "Zqxwillow"  # Artist
    img.save(buf, "JPEG", exif=exif.tobytes(), comment=b"Secretina")
    data = buf.getvalue()
    stripped = strip_jpeg(data)
    assert b"Zqxwillow" in data and b"Secretina" in data
    assert b"Zqxwillow" not in stripped and b"Secretina" not in stripped
    a = Image.open(io.BytesIO(data))
    b = Image.open(io.BytesIO(stripped))
    assert a.tobytes() == b.tobytes()


def test_import_keeps_annotators_and_is_idempotent(tmp_path: Path, store: LabelStore, studies: StudySet) -> None:
    exported = export_labels(store, studies.images, tmp_path / "export")
    other = LabelStore(tmp_path / "machine2.sqlite")
    first = import_labels(other, exported.folder)
    assert first.added == 6 and first.skipped == 0
    labs = other.labels()
    assert {lab.annotator for lab in labs} == {"dr-a", "dr-b"} and {lab.source for lab in labs} == {"person"}
    assert {h.kind for h in other.history()} == {"import"} and {h.source for h in other.history()} == {"person"}
    n_hist = len(other.history())
    again = import_labels(other, exported.folder)
    assert again.added == 0 and len(other.history()) == n_hist
    # the same export back into its own store adds nothing either (keys map back to the originals)
    assert import_labels(store, exported.folder).added == 0

    # machine 2 opens the exported images, adds a label, exports; machine 1 gets it on its own key
    exported_images = scan([exported.folder / "images"])
    target = next(r for r in exported_images.images if r.kind == "dicom" and other.labels(r.key))
    other.set_label(target.key, "acr", "4", 0.8, annotator="dr-c")
    back = export_labels(other, exported_images.images, tmp_path / "back")
    assert target.key in {r.key for r in read_label_manifest(back.manifest)}  # already de-identified: same key
    result = import_labels(store, back.folder)
    assert result.added == 1
    original_key = store.resolve_pseudonym(target.key)
    assert original_key in {r.key for r in studies.images}
    rec = store.label(original_key, "acr", "dr-c")
    assert rec is not None and (rec.value, rec.confidence, rec.source) == ("4", 0.8, "person")
    other.close()


def test_import_of_bad_annotations_names_the_file(tmp_path: Path, store: LabelStore) -> None:
    bad = tmp_path / "annotations.csv"
    bad.write_text("key,annotator,task,value,confidence,time\nk,a,density,Q,1,2025-01-01T00:00:00Z\n")
    with pytest.raises(FormatError, match="annotations.csv"):
        import_labels(store, bad)
    with pytest.raises(FormatError, match="cannot read"):
        import_labels(store, tmp_path / "missing")


def test_import_manifest_suggests(tmp_path: Path, store: LabelStore) -> None:
    manifest = write_label_manifest(
        tmp_path / "dataset.csv",
        [LabelRow("k9", "k9.png", {"density": TaskLabel("D", 0.25), "view": TaskLabel("CC", 0.0)})],
        json_copy=False,
    )
    assert import_manifest(store, manifest).added == 2
    assert import_manifest(store, manifest).added == 0
    recs = store.labels("k9")
    assert {(r.annotator, r.status, r.source) for r in recs} == {("manifest:dataset", "suggested", "manifest")}
    assert store.combined("k9")["density"].value == "D"
    assert not store.can_undo("manifest:dataset")


def test_export_counts_sources_marks_person_made_and_leaves_model_guesses_out(
    tmp_path: Path, store: LabelStore, studies: StudySet
) -> None:
    keys = [r.key for r in studies.images]
    store.set_labels([LabelEdit(keys[1], "density", "A", 0.7, source="model-confirmed")], annotator="dr-a")
    store.set_labels([LabelEdit(keys[1], "acr", "2", 0.55, status="suggested", source="model")], annotator="dr-a")
    manifest = write_label_manifest(
        tmp_path / "dataset.csv", [LabelRow(keys[3], "x.png", {"view": TaskLabel("MLO", 0.1)})], json_copy=False
    )
    import_manifest(store, manifest)
    result = export_labels(store, studies.images, tmp_path / "export")
    assert result.sources == {"person": 6, "model-confirmed": 1, "manifest": 1} and result.left_out == 1
    assert "model-confirmed 1" in result.describe_sources()
    with open(result.folder / "annotations.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert "model" not in {r["source"] for r in rows} and len(rows) == 8
    readme = (result.folder / "README.txt").read_text(encoding="utf-8")
    assert "7 label(s) confirmed by people and 1 suggestion(s)" in readme
    assert "left out: 1" in readme
    by_key = {r.image: r for r in read_label_manifest(result.manifest)}
    labels = [lab for r in by_key.values() for lab in r.labels.values() if lab.value is not None]
    assert {lab.by for lab in labels} == {"person", "suggested"}
    view = [r.label("view") for r in by_key.values() if r.label("view").value == "MLO"]
    assert sorted(lab.by for lab in view) == ["person", "suggested"]  # dr-a's own, and the data set's
    assert all(r.label("acr").value in (None,) for r in by_key.values())  # the model's guess is not there
    header = (result.folder / "manifest.csv").read_text(encoding="utf-8").splitlines()[0]
    assert "malignancy_by" in header


def test_import_leaves_the_model_guesses_of_older_exports_out(tmp_path: Path, store: LabelStore) -> None:
    folder = tmp_path / "old-export"
    folder.mkdir()
    (folder / "annotations.csv").write_text(
        "key,annotator,task,value,confidence,status,source,model_version,time\n"
        "k1,dr-a,malignancy,benign,0.98,confirmed,model,1.0,2025-01-01T00:00:00.000000Z\n"
        "k1,dr-a,acr,4,0.9,confirmed,person,1.0,2025-01-01T00:00:00.000000Z\n",
        encoding="utf-8",
    )
    result = import_labels(store, folder)
    assert (result.added, result.left_out) == (1, 1)
    assert [(r.task, r.source) for r in store.labels("k1")] == [("acr", "person")]
