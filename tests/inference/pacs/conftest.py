"""A real PACS for the network tests: Orthanc (Debian packages ``orthanc`` and ``orthanc-dicomweb``)
started once per session on loopback, with its own ports, storage, a basic-auth user and our AE
titles registered as modalities; stopped by its pid at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "mammo", "s3cret"
SERVER_AE = "ORTHANCTEST"
CLIENT_AE = "MAMMOREVIEW"  # registered: may query, get and move; receives C-MOVE on listener_port


#: pynetdicom 3.0 does not close its socket when a connection is refused (transport.py shuts it down,
#: which raises on an unconnected socket, and skips the close): the socket is freed at once with a
#: ResourceWarning. Only the tests that connect to a closed port let exactly that warning through.
REFUSED_CONNECTION_SOCKET = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Orthanc:
    http_port: int
    dicom_port: int
    ae_title: str
    client_ae: str
    listener_port: int  # where Orthanc sends C-MOVE for client_ae (a test starts its listener there)
    user: str
    password: str

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root without credentials."""
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def dicomweb_with_credentials(self) -> str:
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.http_port}/dicom-web"

    def rest(self, path: str, method: str = "GET") -> object:
        """Orthanc's own REST API (to check what it holds or to empty it)."""
        import base64

        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", method=method)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def clear(self) -> None:
        """Delete every study (tests start from an empty archive)."""
        for study in self.rest("/studies"):  # type: ignore[union-attr]
            self.rest(f"/studies/{study}", method="DELETE")


def _wait_until_up(proc: subprocess.Popen[bytes], server: Orthanc, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            server.rest("/system")
            with socket.create_connection(("127.0.0.1", server.dicom_port), timeout=1):
                return
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
    raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """One Orthanc with DICOMweb for the whole session (never the system's service)."""
    for path in (ORTHANC, DICOMWEB_PLUGIN):
        if not os.path.exists(path):  # .ci/run installs them; a missing one is a setup error, not a skip
            pytest.fail(f"{path} is missing: apt-get install orthanc orthanc-dicomweb")
    root = tmp_path_factory.mktemp("orthanc")
    server = Orthanc(free_port(), free_port(), SERVER_AE, CLIENT_AE, free_port(), USER, PASSWORD)
    config = {
        "Name": "mammo-review-test",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "Plugins": [DICOMWEB_PLUGIN],
        "HttpPort": server.http_port,
        "DicomPort": server.dicom_port,
        "DicomAet": SERVER_AE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{server.http_port}", "Ssl": False},
        # Our AE may query, get and move; C-MOVE to it goes to the listener's port.
        "DicomModalities": {"mammo": [CLIENT_AE, "127.0.0.1", server.listener_port]},
        "DicomCheckCalledAet": True,  # a wrong called AE title is rejected (a refused association)
        "DicomCheckModalityHost": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomScuTimeout": 10,
        "OverwriteInstances": True,
        "StableAge": 1,
        "ConcurrentJobs": 2,
        "HttpThreadsCount": 10,
        "ExecuteLuaEnabled": False,
        "SaveJobs": False,
    }
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=1))
    log = root / "orthanc.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([ORTHANC, str(config_path)], stdout=out, stderr=subprocess.STDOUT, cwd=root)
    try:
        _wait_until_up(proc, server, log)
        yield server
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(root / "db", ignore_errors=True)


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
