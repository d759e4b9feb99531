"""DIMSE (C-ECHO, C-FIND, C-GET, C-MOVE to our listener, C-STORE) against a real Orthanc."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from inference.imaging.studies import scan
from inference.pacs.cache import InstanceCache
from inference.pacs.dimse import DimsePeer
from inference.pacs.errors import AssociationRejectedError, PacsCancelled, PacsConnectionError, PacsError
from inference.pacs.listener import StorageListener
from inference.pacs.query import QueryFilters

from .conftest import REFUSED_CONNECTION_SOCKET, Orthanc, free_port


def _peer(orthanc: Orthanc, **kw: object) -> DimsePeer:
    return DimsePeer("127.0.0.1", orthanc.dicom_port, orthanc.ae_title, calling_ae=orthanc.client_ae, **kw)  # type: ignore[arg-type]


@pytest.fixture
def stored_study(empty_orthanc: Orthanc, study_files: list[Path]) -> str:
    """The phantom study, sent to Orthanc by C-STORE; its Study Instance UID."""
    stored = _peer(empty_orthanc).store(study_files)
    assert sorted(stored) == sorted(str(dcmread(p).SOPInstanceUID) for p in study_files)
    return str(dcmread(study_files[0]).StudyInstanceUID)


def _sop_uids(files: list[Path]) -> list[str]:
    return sorted(str(dcmread(p).SOPInstanceUID) for p in files)


def test_echo(orthanc: Orthanc) -> None:
    _peer(orthanc).echo()


def test_find_studies_series_and_instances(stored_study: str, orthanc: Orthanc, study_files: list[Path]) -> None:
    peer = _peer(orthanc)
    studies = peer.find_studies(QueryFilters(patient_name="Phantom*"))
    assert [s.study_uid for s in studies] == [stored_study]
    assert (studies[0].patient_id, studies[0].accession, studies[0].n_instances) == ("PHANTOM001", "ACCPHANTOM001", 4)
    assert peer.find_studies(QueryFilters(patient_id="PHANTOM001", modality="CT")) == []
    assert peer.find_studies(QueryFilters(date_from="20240116")) == []
    assert len(peer.find_series(stored_study)) == 4
    assert sorted(i.sop_uid for i in peer.find_instances(stored_study)) == _sop_uids(study_files)


def test_c_get_a_study(stored_study: str, orthanc: Orthanc, study_files: list[Path], tmp_path: Path) -> None:
    cache = InstanceCache(tmp_path)
    seen: list[tuple[int, int]] = []
    paths = _peer(orthanc).get_study(stored_study, cache, progress=lambda d, t: seen.append((d, t)))
    assert sorted(p.stem for p in paths) == _sop_uids(study_files)
    assert seen[-1] == (4, 4)
    found = scan([cache.study_folder(stored_study)])
    assert not found.problems and len(found.images) == 4
    original = {str(dcmread(p).SOPInstanceUID): dcmread(p).pixel_array for p in study_files}
    for path in paths:
        ds = dcmread(path)
        assert (ds.pixel_array == original[str(ds.SOPInstanceUID)]).all()


def test_c_get_can_be_cancelled(stored_study: str, orthanc: Orthanc, tmp_path: Path) -> None:
    with pytest.raises(PacsCancelled):
        _peer(orthanc).get_study(stored_study, InstanceCache(tmp_path), cancelled=lambda: True)


def test_c_move_to_our_listener(stored_study: str, orthanc: Orthanc, study_files: list[Path], tmp_path: Path) -> None:
    cache = InstanceCache(tmp_path)
    arrived: list[Path] = []
    with StorageListener(cache, orthanc.client_ae, orthanc.listener_port, "127.0.0.1", on_stored=arrived.append):
        sent = _peer(orthanc).move_study(stored_study, orthanc.client_ae)
    assert sent == 4
    assert sorted(p.stem for p in arrived) == _sop_uids(study_files)
    assert len(scan([cache.study_folder(stored_study)]).images) == 4


@REFUSED_CONNECTION_SOCKET
def test_the_listener_takes_a_push(tmp_path: Path, study_files: list[Path]) -> None:
    port = free_port()
    cache = InstanceCache(tmp_path)
    with StorageListener(cache, "MAMMOLISTEN", port, "127.0.0.1") as listener:
        modality = DimsePeer("127.0.0.1", port, "MAMMOLISTEN", calling_ae="MODALITY")
        modality.echo()
        modality.store(study_files[:2])
        assert sorted(p.stem for p in listener.received) == _sop_uids(study_files[:2])
        with pytest.raises(AssociationRejectedError, match="rejected the association"):
            DimsePeer("127.0.0.1", port, "SOMEONEELSE").echo()
    with pytest.raises(PacsConnectionError):
        modality.echo()


def test_a_refused_association_is_named(orthanc: Orthanc) -> None:
    with pytest.raises(AssociationRejectedError, match=r"rejected the association .*MAMMOREVIEW registered"):
        DimsePeer("127.0.0.1", orthanc.dicom_port, "WRONGAE", calling_ae=orthanc.client_ae).echo()


def test_an_unknown_caller_cannot_query(orthanc: Orthanc) -> None:
    stranger = DimsePeer("127.0.0.1", orthanc.dicom_port, orthanc.ae_title, calling_ae="STRANGER")
    with pytest.raises(PacsError, match="ORTHANCTEST"):
        stranger.find_studies()


@REFUSED_CONNECTION_SOCKET
def test_a_closed_port_is_a_connection_error() -> None:
    with pytest.raises(PacsConnectionError, match="cannot connect"):
        DimsePeer("127.0.0.1", free_port(), "ANY", timeout=5).echo()


def test_ae_titles_are_checked() -> None:
    with pytest.raises(PacsError, match="not a valid AE title"):
        DimsePeer("127.0.0.1", 104, "A" * 17)
