"""TLS against a real Orthanc: DIMSE over DICOM TLS (Orthanc's DicomTlsEnabled) and DICOMweb over
https (a TLS proxy in front of Orthanc's HTTP, see tls_proxy.py), certificates made by a throwaway
CA. A wrong CA and a plain-vs-TLS mismatch each give a named error, quickly."""

from __future__ import annotations

import gc
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from inference.pacs.cache import InstanceCache
from inference.pacs.cli import main as pacs_main
from inference.pacs.dicomweb import DicomWebServer
from inference.pacs.dimse import DimsePeer
from inference.pacs.errors import AssociationRejectedError, PacsConnectionError
from inference.pacs.node import open_server, retrieve

from .conftest import REFUSED_CONNECTION_SOCKET, Orthanc
from .orthanc import TlsFiles, make_certificates, missing_programs, running_orthanc
from .tls_proxy import TlsProxy


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA that signed nothing the servers use."""
    return make_certificates(tmp_path_factory.mktemp("other-tls"), ca_name="another CA")


@pytest.fixture(scope="module")
def tls_orthanc(tmp_path_factory: pytest.TempPathFactory, certificates: TlsFiles) -> Iterator[Orthanc]:
    """An Orthanc whose DICOM port speaks DICOM TLS only."""
    if missing_programs():
        pytest.fail(f"{', '.join(missing_programs())} missing: apt-get install orthanc orthanc-dicomweb")
    with running_orthanc(tmp_path_factory.mktemp("orthanc-tls"), tls=certificates) as server:
        yield server


@pytest.fixture(scope="module")
def https_port(tls_orthanc: Orthanc, certificates: TlsFiles) -> Iterator[int]:
    """https://127.0.0.1:<port> in front of the TLS Orthanc's HTTP."""
    with TlsProxy(tls_orthanc.http_port, certificates.cert, certificates.key) as proxy:
        yield proxy.port


def _dimse(server: Orthanc, ca: Path | None, tls: bool = True) -> DimsePeer:
    return DimsePeer("127.0.0.1", server.dicom_port, server.ae_title, calling_ae=server.client_ae, timeout=10,
                     tls=tls, ca_file=str(ca) if ca else None)  # fmt: skip


def _https(server: Orthanc, port: int) -> str:
    return f"https://{server.user}:{server.password}@127.0.0.1:{port}/dicom-web"


def test_dimse_over_tls_stores_finds_and_gets(
    tls_orthanc: Orthanc, certificates: TlsFiles, study_files: list[Path], tmp_path: Path
) -> None:
    peer = open_server(f"dicoms://{tls_orthanc.ae_title}@127.0.0.1:{tls_orthanc.dicom_port}",
                       calling_ae=tls_orthanc.client_ae, timeout=10, ca_file=str(certificates.ca))  # fmt: skip
    assert isinstance(peer, DimsePeer) and peer.tls
    peer.echo()
    assert len(peer.store(study_files)) == 4
    study_uid = str(dcmread(study_files[0]).StudyInstanceUID)
    assert [m.study_uid for m in peer.find_studies()] == [study_uid]
    got = retrieve(peer, study_uid, InstanceCache(tmp_path))
    assert sorted(p.name for p in got) == sorted(f"{dcmread(f).SOPInstanceUID}.dcm" for f in study_files)


@REFUSED_CONNECTION_SOCKET  # pynetdicom leaves the socket of a failed handshake to the collector too
def test_dimse_tls_with_the_wrong_ca_is_named(tls_orthanc: Orthanc, other_ca: TlsFiles) -> None:
    start = time.monotonic()
    with pytest.raises(PacsConnectionError, match="certificate is not trusted"):
        _dimse(tls_orthanc, other_ca.ca).echo()
    assert time.monotonic() - start < 9  # named at once, not after the 10 s timeout
    gc.collect()  # that socket's warning here, not in the next test


def test_plain_dimse_to_a_tls_port_is_named(tls_orthanc: Orthanc) -> None:
    with pytest.raises(AssociationRejectedError, match="expect DICOM TLS"):
        _dimse(tls_orthanc, None, tls=False).echo()


@REFUSED_CONNECTION_SOCKET
def test_dimse_tls_to_a_plain_port_is_named(orthanc: Orthanc, certificates: TlsFiles) -> None:
    start = time.monotonic()
    with pytest.raises(PacsConnectionError, match="no TLS handshake"):
        _dimse(orthanc, certificates.ca).echo()
    assert time.monotonic() - start < 9
    gc.collect()


def test_dicomweb_over_https_with_the_ca_file(
    tls_orthanc: Orthanc, https_port: int, certificates: TlsFiles, study_files: list[Path], tmp_path: Path
) -> None:
    server = open_server(_https(tls_orthanc, https_port), ca_file=str(certificates.ca))
    assert isinstance(server, DicomWebServer)
    server.store([dcmread(p) for p in study_files])
    study_uid = str(dcmread(study_files[0]).StudyInstanceUID)
    assert study_uid in [m.study_uid for m in server.query_studies()]
    assert len(server.retrieve_study(study_uid, InstanceCache(tmp_path))) == 4
    out = io.StringIO()  # and the command line's --ca-file
    assert pacs_main(["echo", _https(tls_orthanc, https_port), "--ca-file", str(certificates.ca)], out=out) == 0
    assert out.getvalue().endswith(": ok\n")


def test_https_with_the_wrong_ca_is_named(tls_orthanc: Orthanc, https_port: int, other_ca: TlsFiles) -> None:
    with pytest.raises(PacsConnectionError, match="certificate is not trusted"):
        open_server(_https(tls_orthanc, https_port), ca_file=str(other_ca.ca)).echo()
    with pytest.raises(PacsConnectionError, match="certificate is not trusted"):  # the system's CAs: not ours
        open_server(_https(tls_orthanc, https_port)).echo()


def test_http_https_mismatches_are_named(tls_orthanc: Orthanc, https_port: int, certificates: TlsFiles) -> None:
    with pytest.raises(PacsConnectionError, match="expect https"):
        open_server(_https(tls_orthanc, https_port).replace("https:", "http:", 1), timeout=10).echo()
    plain = f"https://127.0.0.1:{tls_orthanc.http_port}/dicom-web"
    with pytest.raises(PacsConnectionError, match="no TLS handshake"):
        open_server(plain, ca_file=str(certificates.ca), timeout=10).echo()


def test_a_missing_ca_file_is_named(tls_orthanc: Orthanc, https_port: int, tmp_path: Path) -> None:
    with pytest.raises(PacsConnectionError, match="CA file"):
        open_server(_https(tls_orthanc, https_port), ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(PacsConnectionError, match="CA file"):
        _dimse(tls_orthanc, tmp_path / "nope.pem").echo()
