"""The optional GSPS overlay: the evidence region and the probability on each image, validated by
dciodvfy, and read back from Orthanc after STOW-RS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from inference.pacs.cache import InstanceCache
from inference.pacs.dicomweb import DicomWebServer
from inference.pacs.errors import PacsError
from inference.pacs.findings import ImageFinding
from inference.pacs.presentation import GSPS_LAYER, build_gsps
from inference.pacs.results import result_objects

from .conftest import Orthanc, dciodvfy
from .test_results import _findings


@pytest.fixture
def sources(study_files: list[Path]) -> dict[str, Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in (dcmread(p, stop_before_pixels=True) for p in study_files)}


def _overlay(gsps: Dataset) -> tuple[list[list[float]], list[str]]:
    annotation = gsps.GraphicAnnotationSequence[0]
    assert annotation.GraphicLayer == GSPS_LAYER
    lines = [list(map(float, g.GraphicData)) for g in annotation.get("GraphicObjectSequence", [])]
    return lines, [str(t.UnformattedTextValue) for t in annotation.TextObjectSequence]


def test_the_gsps_draws_the_evidence_box_and_the_probability(sources: dict[str, Dataset], tmp_path: Path) -> None:
    findings = _findings(sources)
    image = findings.images[1]
    gsps = build_gsps(image, sources[image.sop_uid], findings)
    path = tmp_path / "gsps.dcm"
    gsps.save_as(path, enforce_file_format=True)
    dciodvfy(path)
    back = dcmread(path)
    assert back.Modality == "PR" and "RESEARCH USE ONLY" in back.SeriesDescription
    assert back.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == image.sop_uid
    lines, texts = _overlay(back)
    assert lines == [[50.0, 100.0, 90.0, 100.0, 90.0, 140.0, 50.0, 140.0, 50.0, 100.0]]  # columns 50-89, rows 100-139
    assert texts == ["P(cancer) 0.20 (mammo-mtl, research use only)"]


def test_without_evidence_only_the_text(sources: dict[str, Dataset], tmp_path: Path) -> None:
    findings = _findings(sources)
    first = findings.images[0]
    image = ImageFinding(first.sop_uid, first.laterality, 0.05, first.density, first.view, np.zeros((4, 4)))
    gsps = build_gsps(image, sources[image.sop_uid], findings)
    path = tmp_path / "gsps.dcm"
    gsps.save_as(path, enforce_file_format=True)
    dciodvfy(path)
    lines, texts = _overlay(dcmread(path))
    assert lines == [] and texts[0].startswith("P(cancer) 0.05")
    with pytest.raises(PacsError, match="not that of image"):
        build_gsps(image, sources[findings.images[1].sop_uid], findings)


def test_result_objects_add_a_gsps_per_image_only_when_asked(sources: dict[str, Dataset]) -> None:
    findings = _findings(sources)
    assert [ds.Modality for ds in result_objects(findings, sources)] == ["SR"] + ["SEG"] * 4
    with_gsps = result_objects(findings, sources, gsps=True)
    assert [ds.Modality for ds in with_gsps] == ["SR"] + ["SEG"] * 4 + ["PR"] * 4
    states = [ds for ds in with_gsps if ds.Modality == "PR"]
    assert {ds.Laterality for ds in states} == {"L", "R"}
    assert len({(ds.SeriesInstanceUID, ds.Laterality) for ds in states}) == 2  # a series per breast


def test_the_gsps_is_read_back_from_orthanc(
    empty_orthanc: Orthanc, study_files: list[Path], sources: dict[str, Dataset], tmp_path: Path
) -> None:
    server = DicomWebServer(empty_orthanc.dicomweb_with_credentials)
    server.store([dcmread(p) for p in study_files])
    findings = _findings(sources)
    objects = [ds for ds in result_objects(findings, sources, gsps=True) if ds.Modality == "PR"]
    assert sorted(server.store(objects)) == sorted(str(ds.SOPInstanceUID) for ds in objects)
    assert "PR" in {s.modality for s in server.query_series(findings.study_uid)}
    paths = server.retrieve_study(findings.study_uid, InstanceCache(tmp_path))
    back = [dcmread(p) for p in paths if dcmread(p, stop_before_pixels=True).Modality == "PR"]
    assert len(back) == 4
    for ds in back:
        dciodvfy(Path(ds.filename))
        image = ds.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID
        p = next(i.p_malignant for i in findings.images if i.sop_uid == image)
        assert _overlay(ds)[1] == [f"P(cancer) {p:.2f} (mammo-mtl, research use only)"]
