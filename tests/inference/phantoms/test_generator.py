"""The phantom generator draws what its ground truth says and writes DICOM that pydicom reads back."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.pixels import apply_voi_lut

from inference.phantoms.generator import (
    MG_FOR_PRESENTATION,
    TRANSFER_SYNTAXES,
    CalcCluster,
    Mass,
    PhantomSpec,
    ground_truth,
    main,
    render,
    render_with_truth,
    write_jpeg,
    write_non_image_dicom,
    write_png,
    write_study,
)

SMALL = (256, 192)
LOSSY = {"jpeg-baseline"}


def _ring_contrast(image: np.ndarray, y: float, x: float, r: float) -> float:
    yy, xx = np.indices(image.shape)
    d = np.hypot(yy - y, xx - x)
    return float(image[d < 0.5 * r].mean() - image[(d > 2.0 * r) & (d < 3.0 * r)].mean())


@pytest.mark.parametrize("name", sorted(TRANSFER_SYNTAXES))
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_every_transfer_syntax_round_trips(phantom_dicom, phantom_spec, name, photometric):
    path = phantom_dicom(f"{name}.dcm", transfer_syntax=name, photometric=photometric, bits_stored=14)
    ds = dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[name]
    assert ds.SOPClassUID == MG_FOR_PRESENTATION and ds.Modality == "MG"
    assert ds.PhotometricInterpretation == photometric
    assert (ds.ImageLaterality, ds.ViewPosition) == ("L", "CC")
    bits = 8 if name in LOSSY else 14
    assert ds.BitsStored == bits
    top = (1 << bits) - 1
    expected = np.round(render(phantom_spec) * top)
    if photometric == "MONOCHROME1":
        expected = top - expected
    error = np.abs(ds.pixel_array.astype(np.int64) - expected)
    assert ds.pixel_array.shape == SMALL
    assert error.max() == 0 if name not in LOSSY else error.mean() < 3


@pytest.mark.parametrize("bits", [12, 16])
def test_monochrome1_is_stored_inverted(phantom_dicom, bits):
    mono2 = dcmread(phantom_dicom("m2.dcm", bits_stored=bits)).pixel_array.astype(np.int64)
    mono1 = dcmread(phantom_dicom("m1.dcm", bits_stored=bits, photometric="MONOCHROME1"))
    assert np.array_equal(mono1.pixel_array, (1 << bits) - 1 - mono2)
    assert mono1.BitsStored == bits and mono1.PixelIntensityRelationshipSign == 1


def test_voi_modes(phantom_dicom):
    window = dcmread(phantom_dicom("w.dcm", voi_lut="window"))
    assert float(window.WindowWidth) > 0 and "VOILUTSequence" not in window
    sigmoid = dcmread(phantom_dicom("s.dcm", voi_lut="sigmoid"))
    assert sigmoid.VOILUTFunction == "SIGMOID"
    bare = dcmread(phantom_dicom("n.dcm", voi_lut=None))
    assert "WindowCenter" not in bare and "VOILUTSequence" not in bare
    lut = dcmread(phantom_dicom("l.dcm", voi_lut="lut", bits_stored=16))
    assert "VOILUTSequence" in lut and "WindowCenter" not in lut
    shown = apply_voi_lut(lut.pixel_array, lut)
    order = np.argsort(lut.pixel_array, axis=None)
    assert shown.max() == 4095 and np.all(np.diff(shown.ravel()[order].astype(np.int64)) >= 0)


def test_tags_modes(phantom_dicom):
    spec = PhantomSpec("L", "MLO", shape=SMALL)
    standard = dcmread(phantom_dicom("std.dcm", spec=spec))
    assert standard.ImageLaterality == standard.Laterality == "L"
    assert standard.ViewPosition == "MLO"
    assert standard.ViewCodeSequence[0].CodeValue == "R-10226"
    assert list(standard.PatientOrientation) == ["A", "F"]
    text = dcmread(phantom_dicom("text.dcm", spec=spec, tags_mode="text_only"))
    none = dcmread(phantom_dicom("none.dcm", spec=spec, tags_mode="none"))
    for ds in (text, none):
        for keyword in ("ImageLaterality", "Laterality", "ViewPosition", "ViewCodeSequence"):
            assert keyword not in ds
    assert text.SeriesDescription == text.ProtocolName == "L MLO"
    strings = [str(e.value) for e in none.iterall() if e.VR in ("LO", "SH", "CS", "ST", "LT")]
    assert not any("MLO" in s or s in ("L", "R") for s in strings)


def test_study_shares_uids_and_is_reproducible(phantom_study, tmp_path):
    sets = [dcmread(p) for p in phantom_study]
    assert len({ds.StudyInstanceUID for ds in sets}) == 1
    assert len({ds.SOPInstanceUID for ds in sets}) == 4
    assert len({ds.SeriesInstanceUID for ds in sets}) == 4
    assert [(ds.ImageLaterality, ds.ViewPosition) for ds in sets] == [
        ("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"),
    ]  # fmt: skip
    again = write_study(tmp_path / "again", shape=SMALL, density="C", malignant_side="R", seed=3)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in phantom_study]
    other = write_study(tmp_path / "other", shape=SMALL, seed=4, transfer_syntax="rle")
    assert dcmread(other[0]).StudyInstanceUID != sets[0].StudyInstanceUID


@pytest.mark.parametrize(
    ("laterality", "view", "mirrored"),
    [("L", "CC", False), ("R", "CC", False), ("R", "MLO", False), ("L", "MLO", True)],
)
def test_masses_land_where_truth_says(laterality, view, mirrored):
    spec = PhantomSpec(
        laterality, view, "A", shape=SMALL, seed=11, mirrored=mirrored,
        masses=(Mass(0.55, 0.4, 0.06, False),), calcifications=(CalcCluster(0.75, 0.3, 0.03, 10),),
    )  # fmt: skip
    image, truth = render_with_truth(spec)
    (mass,) = truth.masses
    chest_right = (laterality == "R") != mirrored
    assert truth.chest_wall == ("right" if chest_right else "left")
    assert mass.x == pytest.approx(191 - 0.4 * 192 if chest_right else 0.4 * 192)
    assert _ring_contrast(image, mass.y, mass.x, mass.radius) > 0.2
    (cluster,) = truth.calcifications
    y, x = int(cluster.y), int(cluster.x)
    r = int(cluster.radius) + 2
    assert image[y - r : y + r, x - r : x + r].max() > 0.9
    edge = slice(0, 8) if chest_right else slice(-8, None)
    chest = slice(-8, None) if chest_right else slice(0, 8)
    assert image[100:150, chest].mean() > 0.2 > image[100:150, edge].mean()
    assert truth.malignant and ground_truth(spec) == truth


def test_random_lesions_fall_inside_the_breast():
    spec = PhantomSpec("R", "MLO", "B", masses=3, calcifications=2, shape=SMALL, seed=5)
    image, truth = render_with_truth(spec)
    assert len(truth.masses) == 3 and len(truth.calcifications) == 2
    for lesion in truth.masses + truth.calcifications:
        assert image[int(lesion.y), int(lesion.x)] > 0.25


def test_mlo_pectoral_and_marker():
    image, truth = render_with_truth(PhantomSpec("L", "MLO", "A", shape=SMALL, seed=2))
    assert truth.pectoral is not None
    (_, _), (_, x_top), (y_apex, _) = truth.pectoral
    muscle = image[2 : int(y_apex / 3), 2 : int(x_top / 3)].mean()
    below = image[int(y_apex) + 10 : int(y_apex) + 40, 5:40].mean()
    assert muscle > below + 0.15
    ((y0, x0, y1, x1),) = truth.markers
    assert x0 > truth.breast_bbox[3]  # away from the breast, on the far side
    box = image[y0:y1, x0:x1]
    assert (box == 1.0).sum() > 0.2 * box.size and image[y0:y1, x1 + 1 :].max() == 0
    assert image[truth.breast_bbox[2] :].max() == 0  # nothing below the inframammary fold
    assert not ground_truth(PhantomSpec("L", "MLO", shape=SMALL, markers=False)).markers


def test_density_controls_the_amount_of_bright_tissue():
    means = []
    for density in "ABCD":
        image, truth = render_with_truth(PhantomSpec("L", "CC", density, shape=SMALL, seed=1))
        r0, c0, r1, c1 = truth.breast_bbox
        breast = image[r0:r1, c0:c1]
        means.append(float((breast > 0.55).mean()))
    assert means == sorted(means) and means[3] > 3 * means[0]


def test_deterministic_for_a_seed():
    spec = PhantomSpec("R", "CC", "C", masses=2, calcifications=1, shape=SMALL, seed=9)
    assert np.array_equal(render(spec), render(spec))
    assert not np.array_equal(render(spec), render(PhantomSpec("R", "CC", "C", shape=SMALL, seed=10)))
    image = render(spec)
    assert image.dtype == np.float32 and image.shape == SMALL
    assert image.min() == 0.0 and image.max() <= 1.0


@pytest.mark.parametrize("kind", ["sr", "gsps"])
def test_non_image_dicom_has_no_pixels(tmp_path, kind):
    ds = dcmread(write_non_image_dicom(tmp_path / f"{kind}.dcm", kind))
    assert "PixelData" not in ds and ds.Modality == {"sr": "SR", "gsps": "PR"}[kind]


def test_png_and_jpeg(tmp_path):
    image = render(PhantomSpec(shape=SMALL))
    with Image.open(write_png(tmp_path / "a.png", image, bits=16)) as png16:
        assert png16.mode.startswith("I") and np.asarray(png16).max() == 65535
    with Image.open(write_png(tmp_path / "a8.png", image)) as png8:
        assert png8.mode == "L" and png8.size == (192, 256)
    with Image.open(write_jpeg(tmp_path / "a.jpg", image)) as jpeg:
        assert jpeg.mode == "L" and np.abs(np.asarray(jpeg) / 255.0 - image).mean() < 0.02


def test_bad_arguments_are_refused(phantom_dicom):
    with pytest.raises(ValueError, match="laterality"):
        PhantomSpec("X", "CC")
    with pytest.raises(ValueError, match="bits_stored"):
        phantom_dicom(bits_stored=10)
    with pytest.raises(ValueError, match="transfer syntax"):
        phantom_dicom(transfer_syntax="1.2.840.10008.1.2.4.100")


def test_cli_writes_studies(tmp_path, capsys):
    assert main([str(tmp_path), "--studies", "2", "--rows", "128", "--cols", "96"]) == 0
    written = sorted(tmp_path.rglob("*.dcm"))
    assert len(written) == 8 and capsys.readouterr().out.count("4 images") == 2
    assert dcmread(written[0]).pixel_array.shape == (128, 96)


def test_bundled_samples_are_readable_phantoms():
    root = Path(str(files("resources") / "samples"))
    studies = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(studies) == 2 and (root / "README.md").is_file()
    for study in studies:
        sets = [dcmread(p) for p in sorted(study.glob("*.dcm"))]
        assert len(sets) == 4 and len({ds.StudyInstanceUID for ds in sets}) == 1
        assert all(ds.Manufacturer == "mammo-review phantom" for ds in sets)
        assert all(ds.pixel_array.max() > 0 for ds in sets)
