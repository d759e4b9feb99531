"""Predictions as DICOM: the TID 1500 SR and the fractional SEG, validated by dciodvfy and dsrdump."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from inference.pacs.errors import PacsError
from inference.pacs.findings import BreastFinding, ImageFinding, StudyFindings, evidence_box
from inference.pacs.results import RESEARCH_USE, build_seg, build_sr

from .conftest import dciodvfy, dsrdump
from .srread import evidence_uids, measurement_groups


@pytest.fixture
def sources(study_files: list[Path]) -> dict[str, Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in (dcmread(p, stop_before_pixels=True) for p in study_files)}


def _findings(sources: dict[str, Dataset]) -> StudyFindings:
    images = []
    for i, (uid, ds) in enumerate(sources.items()):
        evidence = np.full((int(ds.Rows), int(ds.Columns)), -0.1, np.float32)
        evidence[100:140, 50:90] = 0.5 + i  # the region
        evidence[10:12, 200:202] = 0.1  # weaker: not in it
        view = (0.9, 0.1) if ds.ViewPosition == "CC" else (0.2, 0.8)
        images.append(ImageFinding(uid, str(ds.ImageLaterality), 0.1 * (i + 1), (0.1, 0.6, 0.2, 0.1), view, evidence))
    breasts = tuple(
        BreastFinding(side, 0.25 if side == "R" else 0.4, (0.2, 0.2, 0.5, 0.1),
                      tuple(im.sop_uid for im in images if im.laterality == side))
        for side in ("R", "L")
    )  # fmt: skip
    study = str(next(iter(sources.values())).StudyInstanceUID)
    return StudyFindings(study, tuple(images), breasts, 0.4, (0.1, 0.1, 0.2, 0.6), "mammo-mtl", "1.0.1")


def test_evidence_box_is_the_connected_area_around_the_peak() -> None:
    ev = np.zeros((50, 40), np.float32)
    ev[10:20, 5:15] = 1.0
    ev[12, 8] = 2.0
    ev[40:45, 30:35] = 1.5  # strong, but not connected to the peak
    ev[30, 0] = -5.0
    assert evidence_box(ev) == (5, 10, 14, 19)
    assert evidence_box(-np.ones((4, 4), np.float32)) is None


def test_the_sr_holds_every_probability_and_reference(sources: dict[str, Dataset], tmp_path: Path) -> None:
    findings = _findings(sources)
    sr = build_sr(findings, sources)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    dciodvfy(path)
    text = dsrdump(path)
    assert "Probability of cancer" in text and "Imaging Measurement Report" in text

    back = dcmread(path)
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert RESEARCH_USE in back.SeriesDescription
    assert (back.VerificationFlag, back.CompletionFlag) == ("UNVERIFIED", "PARTIAL")
    assert back.StudyInstanceUID == findings.study_uid and back.PatientID == "PHANTOM001"
    assert evidence_uids(back) == set(sources)
    groups = measurement_groups(back)
    for i, image in enumerate(findings.images, start=1):
        ds = sources[image.sop_uid]
        label = f"{i} {image.laterality}-{ds.ViewPosition}"
        group = groups[f"image {label}"]
        assert group.probability is not None and math.isclose(group.probability, image.p_malignant, abs_tol=1e-6)
        assert group.images == [image.sop_uid]
        assert group.codes["Breast composition"] == "Scattered fibroglandular densities"
        assert group.codes["Image View"] == ("cranio-caudal" if ds.ViewPosition == "CC" else "medio-lateral oblique")
        assert group.codes["Laterality"] == {"R": "Right", "L": "Left"}[image.laterality]
        region = groups[f"evidence {label}"]
        assert region.images == [image.sop_uid]
        assert region.region == [50.0, 100.0, 90.0, 100.0, 90.0, 140.0, 50.0, 140.0, 50.0, 100.0]
    for breast in findings.breasts:
        group = groups[f"breast {breast.laterality}"]
        assert group.probability == pytest.approx(breast.p_malignant)
        assert sorted(group.images) == sorted(breast.sop_uids)
        assert group.codes["Breast composition"] == "Heterogeneously dense"
    exam = groups["exam"]
    assert exam.probability == pytest.approx(0.4)
    assert sorted(exam.images) == sorted(sources)
    assert exam.codes["Breast composition"] == "Extremely dense"


def test_an_image_without_evidence_has_no_region(sources: dict[str, Dataset], tmp_path: Path) -> None:
    findings = _findings(sources)
    first = findings.images[0]
    bare = ImageFinding(first.sop_uid, first.laterality, math.nan, (), (), None)
    only = StudyFindings(findings.study_uid, (bare,), (), 0.1, (), "mammo-mtl", "")
    sr = build_sr(only, sources)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    dciodvfy(path)
    dsrdump(path)
    groups = measurement_groups(dcmread(path))
    assert set(groups) == {f"image 1 {first.laterality}-{sources[first.sop_uid].ViewPosition}", "exam"}
    assert groups[next(iter(groups))].probability is None


def test_a_missing_source_header_is_an_error(sources: dict[str, Dataset]) -> None:
    findings = _findings(sources)
    with pytest.raises(PacsError, match="no source image header"):
        build_sr(findings, dict(list(sources.items())[:2]))


def test_the_seg_is_the_fractional_positive_evidence(sources: dict[str, Dataset], tmp_path: Path) -> None:
    findings = _findings(sources)
    image = findings.images[2]
    seg = build_seg(image, sources[image.sop_uid], findings)
    path = tmp_path / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)
    dciodvfy(path)
    back = dcmread(path)
    assert back.SegmentationType == "FRACTIONAL" and RESEARCH_USE in back.SeriesDescription
    ref = back.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert ref.ReferencedSOPInstanceUID == image.sop_uid
    frame = back.pixel_array.astype(np.float32) / float(back.MaximumFractionalValue)
    assert frame.shape == image.evidence.shape  # type: ignore[union-attr]
    assert frame[120, 70] == pytest.approx(1.0) and frame[11, 201] == pytest.approx(0.1 / 2.5, abs=1 / 255)
    assert frame[0, 0] == 0.0  # negative evidence is not part of it
