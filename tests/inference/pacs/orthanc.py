"""Start and stop a private Orthanc (with DICOMweb) on loopback: for the PACS tests (the session
fixture in conftest.py) and benchmarks/bench_pacs.py. Never the system's Orthanc service."""

from __future__ import annotations

import base64
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "mammo", "s3cret"
SERVER_AE = "ORTHANCTEST"
CLIENT_AE = "MAMMOREVIEW"  # registered: may query, get and move; receives C-MOVE on listener_port


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
    tls: TlsFiles | None = None  # the DICOM port speaks DICOM TLS with these files; plain otherwise

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root without credentials."""
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def dicomweb_with_credentials(self) -> str:
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.http_port}/dicom-web"

    def rest(self, path: str, method: str = "GET") -> object:
        """Orthanc's own REST API (to check what it holds or to empty it)."""
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


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate it signed for 127.0.0.1 (PEM files)."""

    ca: Path
    ca_key: Path
    cert: Path
    key: Path


def make_certificates(folder: Path, ca_name: str = "mammo-review test CA") -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr, ext = folder / "server.pem", folder / "server.key", folder / "server.csr", folder / "ext.cnf"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
            "-subj", f"/CN={ca_name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return TlsFiles(ca, ca_key, cert, key)


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


def missing_programs() -> list[str]:
    return [p for p in (ORTHANC, DICOMWEB_PLUGIN) if not os.path.exists(p)]


@contextmanager
def running_orthanc(root: Path, tls: TlsFiles | None = None) -> Iterator[Orthanc]:
    """An Orthanc with its configuration, storage and log under ``root``, stopped by its pid on exit.
    With ``tls`` the DICOM port speaks DICOM TLS only (no client certificate asked). HTTP stays plain:
    Debian's Orthanc 1.10.1 crashes (SIGSEGV) on the first request with SslEnabled, so the HTTPS
    tests put `tls_proxy.TlsProxy` in front of it."""
    root.mkdir(parents=True, exist_ok=True)
    server = Orthanc(free_port(), free_port(), SERVER_AE, CLIENT_AE, free_port(), USER, PASSWORD, tls)
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
    if tls is not None:
        config.update({
            "DicomTlsEnabled": True, "DicomTlsCertificate": str(tls.cert), "DicomTlsPrivateKey": str(tls.key),
            "DicomTlsTrustedCertificates": str(tls.ca), "DicomTlsRemoteCertificateRequired": False,
        })  # fmt: skip
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
