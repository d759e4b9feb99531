"""``python -m inference pacs ...`` and ``predict --from-pacs`` against a real Orthanc."""

from __future__ import annotations

import csv
import io
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from inference.cli import main
from inference.pacs.cache import InstanceCache
from inference.pacs.cli import main as pacs_main
from inference.pacs.dicomweb import DicomWebServer
from inference.pacs.dimse import DimsePeer

from .conftest import Orthanc, dciodvfy, dsrdump, free_port
from .srread import evidence_uids, measurement_groups


def _dimse(orthanc: Orthanc, ae: str | None = None) -> str:
    return f"dicom://{ae or orthanc.ae_title}@127.0.0.1:{orthanc.dicom_port}"


def _study_uid(files: list[Path]) -> str:
    return str(dcmread(files[0]).StudyInstanceUID)


def test_send_query_echo_and_retrieve(
    empty_orthanc: Orthanc, study_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orthanc, uid = empty_orthanc, _study_uid(study_files)
    assert main(["pacs", "send", orthanc.dicomweb_with_credentials, *map(str, study_files)]) == 0
    assert "4 instance(s) sent" in capsys.readouterr().out
    for server in (orthanc.dicomweb_with_credentials, _dimse(orthanc)):
        assert main(["pacs", "echo", server, "--calling-ae", orthanc.client_ae]) == 0
        assert ": ok" in capsys.readouterr().out
        assert main(["pacs", "query", server, "--patient-id", "PHANTOM001", "--calling-ae", orthanc.client_ae]) == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out), delimiter="\t"))
        assert [(r["study_uid"], r["patient_name"], r["modalities"], r["instances"]) for r in rows] == [
            (uid, "Phantom^Patient", "MG", "4")
        ]
    cache = tmp_path / "cache"
    args = ["--study", uid, "--cache", str(cache), "--calling-ae", orthanc.client_ae]
    assert main(["pacs", "retrieve", _dimse(orthanc), "--method", "move", "--listen-port", str(orthanc.listener_port),
                 *args]) == 0  # fmt: skip
    folder = Path(capsys.readouterr().out.strip())
    assert folder == cache / uid and len(list(folder.glob("*.dcm"))) == 4


def test_listen_until_stopped(tmp_path: Path, study_files: list[Path]) -> None:
    port, stop, out, err = free_port(), threading.Event(), io.StringIO(), io.StringIO()
    thread = threading.Thread(
        target=pacs_main, args=(["listen", "--ae-title", "LISTENER", "--port", str(port), "--host", "127.0.0.1",
                                 "--cache", str(tmp_path)], out, err, stop),
    )  # fmt: skip
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "listening" not in err.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        DimsePeer("127.0.0.1", port, "LISTENER", calling_ae="MODALITY").store(study_files[:1])
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    received = [Path(line) for line in out.getvalue().splitlines()]
    assert [p.stem for p in received] == [str(dcmread(study_files[0]).SOPInstanceUID)] and received[0].is_file()


def test_predict_from_pacs_sends_the_results_back(
    empty_orthanc: Orthanc, study_files: list[Path], tmp_path: Path
) -> None:
    orthanc, uid = empty_orthanc, _study_uid(study_files)
    DicomWebServer(orthanc.dicomweb_with_credentials).store([dcmread(p) for p in study_files])
    out = tmp_path / "predictions.csv"
    code = main(["predict", "--from-pacs", orthanc.dicomweb_with_credentials, "--study", uid, "--send-results",
                 "--cache", str(tmp_path / "cache"), "--out", str(out), "--quiet", "--device", "cpu"])  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    images = {r["key"]: float(r["p_malignant"]) for r in rows if r["level"] == "image" and r["status"] == "ok"}
    sops = {str(dcmread(p).SOPInstanceUID) for p in study_files}
    assert set(images) == sops
    exam = next(float(r["p_malignant"]) for r in rows if r["level"] == "exam")

    server = DicomWebServer(orthanc.dicomweb_with_credentials)
    series = {s.modality: s for s in server.query_series(uid)}
    assert set(series) == {"MG", "SR", "SEG"}
    assert series["SEG"].n_instances == 4 and series["SR"].n_instances == 1
    back = server.retrieve_study(uid, InstanceCache(tmp_path / "back"))
    results = [dcmread(p) for p in back if p.stem not in sops]
    assert sorted(ds.Modality for ds in results) == ["SEG", "SEG", "SEG", "SEG", "SR"]
    for path in back:
        if path.stem not in sops:
            dciodvfy(path)
    sr_path = next(p for p in back if dcmread(p, stop_before_pixels=True).Modality == "SR")
    dsrdump(sr_path)
    sr = dcmread(sr_path)
    assert evidence_uids(sr) == sops
    groups = measurement_groups(sr)
    image_groups = [g for name, g in groups.items() if name.startswith("image ")]
    assert {g.images[0]: g.probability for g in image_groups} == pytest.approx(images, abs=1e-6)
    assert groups["exam"].probability == pytest.approx(exam, abs=1e-6)
    assert sum(name.startswith("evidence ") for name in groups) == 4
    assert {ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
            for ds in results if ds.Modality == "SEG"} == sops  # fmt: skip
    assert len(list((tmp_path / "predictions.dicom").glob("*.dcm"))) == 5
    # again, now that the study holds our SR and SEGs: they are skipped, the images predicted again
    again = tmp_path / "again.csv"
    assert main(["predict", "--from-pacs", orthanc.dicomweb_with_credentials, "--study", uid, "--cache",
                 str(tmp_path / "cache"), "--out", str(again), "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(again.read_text(encoding="utf-8"))))
    assert sorted(r["status"] for r in rows if r["level"] == "image") == ["ok"] * 4 + ["skipped"] * 5


def test_predict_from_pacs_with_gsps(empty_orthanc: Orthanc, study_files: list[Path], tmp_path: Path) -> None:
    orthanc, uid = empty_orthanc, _study_uid(study_files)
    DicomWebServer(orthanc.dicomweb_with_credentials).store([dcmread(p) for p in study_files])
    out = tmp_path / "predictions.csv"
    code = main(["predict", "--from-pacs", orthanc.dicomweb_with_credentials, "--study", uid, "--send-results",
                 "--gsps", "--cache", str(tmp_path / "cache"), "--out", str(out), "--quiet",
                 "--device", "cpu"])  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    images = {r["key"]: float(r["p_malignant"]) for r in rows if r["level"] == "image" and r["status"] == "ok"}
    server = DicomWebServer(orthanc.dicomweb_with_credentials)
    pr = [s for s in server.query_series(uid) if s.modality == "PR"]
    assert sorted(s.n_instances or 0 for s in pr) == [2, 2]  # a series per breast
    back = server.retrieve_study(uid, InstanceCache(tmp_path / "back"))
    states = [dcmread(p) for p in back if dcmread(p, stop_before_pixels=True).Modality == "PR"]
    assert len(states) == 4
    for ds in states:
        dciodvfy(Path(ds.filename))
        image = str(ds.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID)
        text = str(ds.GraphicAnnotationSequence[0].TextObjectSequence[0].UnformattedTextValue)
        assert text.startswith(f"P(cancer) {images[image]:.2f} ")
    assert main(["predict", "--from-pacs", orthanc.dicomweb_with_credentials, "--study", uid, "--gsps",
                 "--out", str(out)]) == 2  # fmt: skip  # --gsps without --send-results


def test_errors_are_one_line_and_exit_2(orthanc: Orthanc, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = f"http://{orthanc.user}:nope@127.0.0.1:{orthanc.http_port}/dicom-web"
    assert main(["pacs", "query", wrong]) == 2
    err = capsys.readouterr().err
    assert "refused the credentials" in err and "nope" not in err and "Traceback" not in err
    assert main(["pacs", "echo", _dimse(orthanc, "NOTTHEPACS"), "--calling-ae", orthanc.client_ae]) == 2
    assert "rejected the association" in capsys.readouterr().err
    assert main(["predict", "--from-pacs", wrong, "--study", "1.2.3", "--out", "x.csv"]) == 2
    assert "refused the credentials" in capsys.readouterr().err
    assert main(["pacs", "query", "ftp://somewhere"]) == 2
    assert "not a server" in capsys.readouterr().err
    assert main(["pacs", "query", orthanc.dicomweb_with_credentials, "--from", "yesterday"]) == 2
    assert "not a date" in capsys.readouterr().err
