"""``python -m inference pacs echo|query|retrieve|send|listen`` and
``python -m inference predict --from-pacs SERVER --study UID [--send-results] --out CSV``.

SERVER is a DICOMweb root (``http[s]://user:pass@host:port/dicom-web``) or ``dicom[s]://AE@host:port``
(dicoms: DICOM TLS); ``--ca-file`` checks https / dicoms certificates against a PEM bundle.
Errors (refused connection, bad credentials, rejected association, timeout) raise `PacsError`,
which ``inference.cli`` prints as one line (exit 2). Results sent back are DICOM SR and SEG
marked research use only (`inference.pacs.results`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from pydicom.dataset import Dataset

from inference.pacs.cache import InstanceCache, default_cache_dir
from inference.pacs.errors import PacsError
from inference.pacs.listener import DEFAULT_AE_TITLE, DEFAULT_PORT, StorageListener
from inference.pacs.node import open_server, query, retrieve, send
from inference.pacs.query import QueryFilters

__all__ = ["main", "predict_from_pacs", "results_for_study"]

_STUDY_COLUMNS = ("study_uid", "patient_id", "patient_name", "study_date", "accession", "modalities", "instances")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "server", metavar="SERVER", help="http[s]://[user:pass@]host[:port]/dicom-web or dicom[s]://AE@host:port (TLS)"
    )
    _network(p)


def _network(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calling-ae", default=DEFAULT_AE_TITLE, help=f"our DIMSE AE title (default {DEFAULT_AE_TITLE})")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server (default 30)")
    p.add_argument("--ca-file", metavar="PEM", help="CA certificates for https / dicoms (default: the system's)")


def _retrieving(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", metavar="DIR", help=f"where retrieved instances go (default {default_cache_dir()})")
    p.add_argument("--method", choices=("auto", "wado", "get", "move"), default="auto",
                   help="WADO-RS for DICOMweb; C-GET (auto) or C-MOVE for DIMSE")  # fmt: skip
    p.add_argument("--listen-port", type=int, default=DEFAULT_PORT, help="our Storage SCP's port for C-MOVE")


def build_parser(prog: str = "python -m inference pacs") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="query and retrieve from a PACS (research use only)")
    sub = parser.add_subparsers(dest="command", required=True)
    _common(sub.add_parser("echo", help="check that the server answers (C-ECHO or a one-study query)"))
    q = sub.add_parser("query", help="list the studies that match (modality MG by default); tab-separated")
    _common(q)
    q.add_argument("--patient-id", default="")
    q.add_argument("--patient-name", default="", help="wildcards * and ? allowed")
    q.add_argument("--from", dest="date_from", default="", metavar="DATE", help="study date from (YYYY-MM-DD)")
    q.add_argument("--to", dest="date_to", default="", metavar="DATE", help="study date to (YYYY-MM-DD)")
    q.add_argument("--accession", default="")
    q.add_argument("--modality", default="MG", help="modality in study (default MG; '' for any)")
    q.add_argument("--limit", type=int, default=None)
    r = sub.add_parser("retrieve", help="retrieve a study into the cache; prints its folder")
    _common(r)
    r.add_argument("--study", required=True, metavar="UID", help="Study Instance UID")
    _retrieving(r)
    s = sub.add_parser("send", help="send DICOM files (STOW-RS or C-STORE)")
    _common(s)
    s.add_argument("files", nargs="+", metavar="FILE")
    listen = sub.add_parser("listen", help="receive what a PACS pushes (Storage SCP) until interrupted")
    listen.add_argument("--ae-title", default=DEFAULT_AE_TITLE)
    listen.add_argument("--port", type=int, default=DEFAULT_PORT)
    listen.add_argument("--host", default="0.0.0.0", help="interface to listen on (default all)")
    listen.add_argument("--cache", metavar="DIR", help=f"where received instances go (default {default_cache_dir()})")
    return parser


def main(argv: Sequence[str], out: IO[str] | None = None, err: IO[str] | None = None,
         stop: threading.Event | None = None) -> int:  # fmt: skip
    """Run a ``pacs`` command; raises `PacsError` for network failures. ``stop`` ends ``listen``."""
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(list(argv))
    if args.command == "listen":
        return _listen(args, out, err, stop or threading.Event())
    server = open_server(args.server, calling_ae=args.calling_ae, timeout=args.timeout, ca_file=args.ca_file)
    if args.command == "echo":
        server.echo()
        out.write(f"{server.name}: ok\n")
    elif args.command == "query":
        filters = QueryFilters(args.patient_id, args.patient_name, args.date_from, args.date_to, args.accession,
                               args.modality)  # fmt: skip
        try:
            filters.keys()
        except ValueError as exc:
            raise PacsError(str(exc)) from None
        found = query(server, filters, limit=args.limit)
        out.write("\t".join(_STUDY_COLUMNS) + "\n")
        for m in found:
            cells = (m.study_uid, m.patient_id, m.patient_name, m.study_date, m.accession, "\\".join(m.modalities),
                     "" if m.n_instances is None else str(m.n_instances))  # fmt: skip
            out.write("\t".join(c.replace("\t", " ") for c in cells) + "\n")
    elif args.command == "retrieve":
        cache = InstanceCache(args.cache)
        paths = retrieve(server, args.study, cache, args.method, args.listen_port)
        err.write(f"{len(paths)} instance(s) of study {args.study}\n")
        out.write(f"{cache.study_folder(args.study)}\n")
    elif args.command == "send":
        from inference.imaging.dicom import read_dicom

        datasets = []
        for f in args.files:
            try:
                datasets.append(read_dicom(f))
            except Exception as exc:  # not DICOM, unreadable: name the file
                raise PacsError(f"not a DICOM file ({type(exc).__name__}: {exc})", f) from None
        stored = send(server, datasets)
        out.write(f"{len(stored)} instance(s) sent\n")
    return 0


def _listen(args: argparse.Namespace, out: IO[str], err: IO[str], stop: threading.Event) -> int:
    cache = InstanceCache(args.cache)

    def stored(path: Path) -> None:
        out.write(f"{path}\n")
        out.flush()

    with StorageListener(cache, args.ae_title, args.port, args.host, on_stored=stored):
        err.write(f"listening as {args.ae_title} on {args.host}:{args.port}; instances go to {cache.root} "
                  "(Ctrl-C to stop)\n")  # fmt: skip
        err.flush()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


# --------------------------------------------------------------------------- predict --from-pacs
def results_for_study(
    predictions: Path, maps: Path | None, study_folder: Path, algorithm_name: str, study_uid: str, gsps: bool = False
) -> list[Dataset]:
    """The SR of a study (and a SEG per image with evidence, with ``gsps`` a presentation state per
    image) from a predictions CSV and maps folder."""
    from inference.pacs.findings import findings_from_csv, findings_in
    from inference.pacs.results import result_objects, source_headers

    findings = findings_in(findings_from_csv(predictions, maps, algorithm_name), study_uid)
    return result_objects(findings, source_headers(sorted(study_folder.glob("*.dcm"))), gsps=gsps)


def predict_from_pacs(
    argv: Sequence[str],
    build_predict_parser: Callable[[], argparse.ArgumentParser],
    run_predict: Callable[[argparse.Namespace, IO[str]], int],
    err: IO[str] | None = None,
) -> int:
    """``predict --from-pacs SERVER --study UID [--send-results] ...``: retrieve the study, run the
    normal ``predict`` on its folder (``build_predict_parser`` and ``run_predict`` come from
    ``inference.cli``), then optionally send the SR and SEGs back and keep copies beside ``--out``."""
    err = err or sys.stderr
    p = argparse.ArgumentParser(
        prog="python -m inference predict --from-pacs",
        description="retrieve a study, predict it like `predict` (every predict option applies, no INPUT), "
        "optionally send the results back as DICOM SR and SEG (research use only)",
    )
    p.add_argument("--from-pacs", required=True, metavar="SERVER")
    p.add_argument("--study", required=True, metavar="UID")
    p.add_argument("--send-results", action="store_true", help="send the SR and SEG back to the server")
    p.add_argument(
        "--gsps", action="store_true", help="with --send-results, also a GSPS per image: evidence box, probability"
    )
    _network(p)
    _retrieving(p)
    ours, rest = p.parse_known_args(list(argv))
    if ours.gsps and not ours.send_results:
        raise PacsError("--gsps goes with --send-results")
    server = open_server(ours.from_pacs, calling_ae=ours.calling_ae, timeout=ours.timeout, ca_file=ours.ca_file)
    cache = InstanceCache(ours.cache)
    retrieve(server, ours.study, cache, ours.method, ours.listen_port)
    folder = cache.study_folder(ours.study)
    args = build_predict_parser().parse_args(["predict", str(folder), *rest])
    if len(args.inputs) != 1:
        raise PacsError("with --from-pacs, give no INPUT: the study is the input")
    scratch = None
    if ours.send_results and not args.maps:
        scratch = Path(tempfile.mkdtemp(prefix="mammo-maps-"))
        args.maps = str(scratch)
    try:
        code = run_predict(args, err)
        if ours.send_results:
            _send_results(args, server, folder, ours.study, err, ours.gsps)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return code


def _send_results(args: Any, server: Any, folder: Path, study_uid: str, err: IO[str], gsps: bool = False) -> None:
    from inference.formats import manifest_path_for, read_model_manifest
    from inference.model.session import bundled_model_path

    manifest = read_model_manifest(manifest_path_for(args.model or bundled_model_path()))
    objects = results_for_study(Path(args.out), Path(args.maps), folder, manifest.name, study_uid, gsps=gsps)
    out = Path(args.out)
    keep = out.parent / f"{out.stem}.dicom"
    keep.mkdir(parents=True, exist_ok=True)
    for ds in objects:
        ds.save_as(keep / f"{ds.Modality}-{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    stored = send(server, objects)
    if not args.quiet:
        kinds = "SR, SEG, GSPS" if gsps else "SR, SEG"
        err.write(f"sent {len(stored)} result object(s) ({kinds}) for study {study_uid}; copies in {keep}\n")
