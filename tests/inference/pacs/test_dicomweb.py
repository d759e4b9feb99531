"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS) against a real Orthanc on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from inference.imaging.studies import scan
from inference.pacs.cache import InstanceCache
from inference.pacs.dicomweb import DicomWebServer, redact, split_credentials
from inference.pacs.errors import PacsAuthError, PacsCancelled, PacsConnectionError, PacsError
from inference.pacs.query import QueryFilters, dicom_date_range

from .conftest import Orthanc, free_port


def _store(orthanc: Orthanc, files: list[Path]) -> str:
    server = DicomWebServer(orthanc.dicomweb_with_credentials)
    datasets = [dcmread(p) for p in files]
    stored = server.store(datasets)
    assert sorted(stored) == sorted(str(ds.SOPInstanceUID) for ds in datasets)
    return str(datasets[0].StudyInstanceUID)


def test_credentials_in_the_url_are_split_off_and_never_shown() -> None:
    url, creds = split_credentials("http://us%40er:p%3Ass@pacs.local:8042/dicom-web")
    assert url == "http://pacs.local:8042/dicom-web"
    assert creds == ("us@er", "p:ss")
    assert split_credentials("https://pacs/dicom-web") == ("https://pacs/dicom-web", None)
    assert "p%3Ass" not in redact("http://us%40er:p%3Ass@pacs.local:8042/dicom-web")
    with pytest.raises(PacsError, match="not a DICOMweb URL"):
        split_credentials("ftp://pacs/")


def test_date_ranges() -> None:
    assert dicom_date_range("2024-01-01", "20241231") == "20240101-20241231"
    assert dicom_date_range("20240101", "") == "20240101-"
    assert dicom_date_range("20240101", "20240101") == "20240101"
    assert dicom_date_range() == ""
    with pytest.raises(ValueError, match="not a date"):
        dicom_date_range("yesterday")


def test_store_query_and_retrieve_a_study(empty_orthanc: Orthanc, study_files: list[Path], tmp_path: Path) -> None:
    study_uid = _store(empty_orthanc, study_files)
    server = DicomWebServer(empty_orthanc.dicomweb, user=empty_orthanc.user, password=empty_orthanc.password)

    studies = server.query_studies(QueryFilters(patient_id="PHANTOM001"))
    assert [s.study_uid for s in studies] == [study_uid]
    match = studies[0]
    assert (match.patient_name, match.study_date) == ("Phantom^Patient", "20240115")
    assert (match.modalities, match.n_instances) == (("MG",), 4)
    assert server.query_studies(QueryFilters(patient_id="NOBODY")) == []
    assert server.query_studies(QueryFilters(patient_id="PHANTOM001", modality="CT")) == []
    assert len(server.query_studies(QueryFilters(date_from="2024-01-01", date_to="2024-01-31"))) == 1
    assert server.query_studies(QueryFilters(date_from="2025-01-01")) == []

    series = server.query_series(study_uid)
    assert len(series) == 4 and {s.modality for s in series} == {"MG"}
    instances = server.query_instances(study_uid)
    assert sorted(i.sop_uid for i in instances) == sorted(str(dcmread(p).SOPInstanceUID) for p in study_files)

    cache = InstanceCache(tmp_path / "cache")
    seen: list[tuple[int, int]] = []
    paths = server.retrieve_study(study_uid, cache, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    assert sorted(p.name for p in paths) == sorted(f"{i.sop_uid}.dcm" for i in instances)
    for path in paths:
        assert path.read_bytes()[128:132] == b"DICM"
    mtimes = {p: p.stat().st_mtime_ns for p in paths}
    assert sorted(server.retrieve_study(study_uid, cache)) == sorted(paths)  # all cached: nothing fetched
    assert {p: p.stat().st_mtime_ns for p in paths} == mtimes
    found = scan([cache.study_folder(study_uid)])
    assert not found.problems
    assert len(found.studies) == 1 and len(found.studies[0].images) == 4
    assert {r.label for r in found.images} == {"R-CC", "L-CC", "R-MLO", "L-MLO"}
    original = {str(dcmread(p).SOPInstanceUID): dcmread(p).pixel_array for p in study_files}
    for path in paths:
        ds = dcmread(path)
        assert (ds.pixel_array == original[str(ds.SOPInstanceUID)]).all()


def test_retrieve_can_be_cancelled(empty_orthanc: Orthanc, study_files: list[Path], tmp_path: Path) -> None:
    study_uid = _store(empty_orthanc, study_files)
    server = DicomWebServer(empty_orthanc.dicomweb_with_credentials)
    cache = InstanceCache(tmp_path)
    calls: list[int] = []
    with pytest.raises(PacsCancelled, match="after 2 of 4"):
        server.retrieve_study(study_uid, cache, progress=lambda d, t: calls.append(d), cancelled=lambda: len(calls) > 2)
    assert len(cache.instances(study_uid)) == 2


def test_a_wrong_password_is_named(orthanc: Orthanc) -> None:
    server = DicomWebServer(f"http://{orthanc.user}:wrong@127.0.0.1:{orthanc.http_port}/dicom-web")
    with pytest.raises(PacsAuthError, match=r"refused the credentials .*HTTP 401") as info:
        server.query_studies()
    assert "wrong" not in str(info.value)
    with pytest.raises(PacsAuthError):
        DicomWebServer(orthanc.dicomweb).echo()


def test_a_refused_connection_is_named() -> None:
    server = DicomWebServer(f"http://127.0.0.1:{free_port()}/dicom-web", timeout=5)
    with pytest.raises(PacsConnectionError, match="cannot connect"):
        server.query_studies()


def test_an_unknown_study_is_an_error(orthanc: Orthanc, tmp_path: Path) -> None:
    server = DicomWebServer(orthanc.dicomweb_with_credentials)
    with pytest.raises(PacsError, match="no instance of study"):
        server.retrieve_study("1.2.3.4.5", InstanceCache(tmp_path))
    with pytest.raises(PacsError, match="not a valid Study Instance UID"):
        server.retrieve_study("../../etc", InstanceCache(tmp_path))


def test_a_server_that_does_not_answer_is_a_timeout() -> None:
    import socket

    from inference.pacs.errors import PacsTimeoutError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        server = DicomWebServer(f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web", timeout=0.5)
        with pytest.raises(PacsTimeoutError, match="did not answer within 0.5 s"):
            server.query_studies()
