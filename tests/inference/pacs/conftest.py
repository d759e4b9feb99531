"""A real PACS for the network tests: Orthanc (Debian packages ``orthanc`` and ``orthanc-dicomweb``)
started once per session on loopback, with its own ports, storage, a basic-auth user and our AE
titles registered as modalities; stopped by its pid at the end."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .orthanc import Orthanc, free_port, missing_programs, running_orthanc

__all__ = ["Orthanc", "free_port", "dciodvfy", "dsrdump", "REFUSED_CONNECTION_SOCKET"]

#: pynetdicom 3.0 does not close its socket when a connection is refused (transport.py shuts it down,
#: which raises on an unconnected socket, and skips the close): the socket is freed at once with a
#: ResourceWarning; the same after a failed TLS handshake. Only the tests that connect to a closed
#: port or fail a handshake let exactly that warning through.
REFUSED_CONNECTION_SOCKET = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <(socket.socket|ssl.SSLSocket):pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """One Orthanc with DICOMweb for the whole session (never the system's service)."""
    missing = missing_programs()
    if missing:  # .ci/run installs them; a missing one is a setup error, not a skip
        pytest.fail(f"{', '.join(missing)} missing: apt-get install orthanc orthanc-dicomweb")
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture
def empty_orthanc(orthanc: Orthanc) -> Orthanc:
    """The session's Orthanc with no study in it."""
    orthanc.clear()
    return orthanc


@pytest.fixture(scope="session")
def study_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A generated 4-view screening study (uncompressed), malignant on the left."""
    from inference.phantoms.generator import write_study

    return write_study(tmp_path_factory.mktemp("study"), shape=(320, 240), malignant_side="L", seed=5)


# --------------------------------------------------------------------------- validators
#: dciodvfy (dicom3tools) messages tolerated in what we write: none so far. A message here must say why.
DCIODVFY_ALLOWED: tuple[str, ...] = ()


def dciodvfy(path: Path) -> None:
    """Fail on any error or warning dciodvfy reports for the file (beyond DCIODVFY_ALLOWED)."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.fail("dciodvfy is missing: apt-get install dicom3tools")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    reported = [ln for ln in lines if ln.startswith(("Error", "Warning"))]
    problems = [ln for ln in reported if not any(a in ln for a in DCIODVFY_ALLOWED)]
    assert not problems, f"dciodvfy {path.name}:\n" + "\n".join(lines)


def dsrdump(path: Path) -> str:
    """The SR rendered by dsrdump (dcmtk); fails on an error or warning it reports."""
    tool = shutil.which("dsrdump")
    if tool is None:
        pytest.fail("dsrdump is missing: apt-get install dcmtk")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    messages = [ln for ln in run.stderr.splitlines() if ln.startswith(("E:", "W:", "F:"))]
    assert run.returncode == 0 and not messages, f"dsrdump {path.name} (exit {run.returncode}):\n{run.stderr}"
    return run.stdout
