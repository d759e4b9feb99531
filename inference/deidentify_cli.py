"""``python -m inference deidentify IN... OUT``: de-identify DICOM files into a folder, with a per-file report.

Every DICOM file under the inputs is checked against the header limits
(:mod:`inference.imaging.limits`), de-identified by the Basic Application Level Confidentiality
Profile (:mod:`inference.imaging.confidentiality`), its pixels outside the breast blanked (then, and
only then, BurnedInAnnotation = NO; ``--no-blank`` keeps the pixels and the report says burned-in text
may remain), and written to ``OUT/<new SOP Instance UID>.dcm``. The names are pseudonyms (a keyed hash
of the SOP Instance UID, digits and dots only), so no input can steer where a file lands; two inputs
with one SOP Instance UID, or a name already in OUT, are an error for that file, never an overwrite.

Each file runs in a worker process (:class:`inference.imaging.isolation.DecodePool`): a decoder that
panics, crashes or runs out of memory costs that file, with its reason in the report.

The report (CSV, cells neutralised by :mod:`inference.csvsafe`) names the input files, so it links the
export back to them: it is written beside OUT (``OUT-report.csv``, or ``--report``), never inside it.
The key (``--key-file``, 32 random bytes made on first use) makes UIDs, pseudonyms and date shifts
agree across runs; without it a fresh key is drawn per run and not kept. Exit codes: 0 every file
done, 1 some file failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from inference.csvsafe import SafeDictWriter
from inference.errors import ImageReadError
from inference.formats import file_sha256
from inference.imaging.confidentiality import Deidentifier, ProfileOptions, blank_dataset
from inference.imaging.dicom import transfer_syntax_of
from inference.imaging.isolation import DecodePool, Source
from inference.imaging.limits import Limits, check_file, limits_from_env

__all__ = ["main", "REPORT_COLUMNS", "FileResult", "DeidentifySettings", "deidentify_file", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
REPORT_COLUMNS: tuple[str, ...] = (
    "source", "output", "status", "reason", "pixels_blanked", "text_outside_breast", "text_touches_breast",
    "burned_in_annotation", "date_shift_days", "removed", "replaced", "emptied", "uids", "dates_shifted",
)
_TEXT_COLUMNS = ("source", "output", "status", "reason", "pixels_blanked", "text_touches_breast",
                 "burned_in_annotation")


@dataclass(frozen=True)
class DeidentifySettings:
    """What one run applies to every file (picklable: it travels to the workers)."""

    out: Path
    key: bytes
    options: ProfileOptions = ProfileOptions()
    blank: bool = True
    limits: Limits = Limits()


@dataclass(frozen=True)
class FileResult:
    """One row of the report."""

    source: str
    output: str = ""
    status: str = "ok"  # "ok" | "error"
    reason: str = ""
    pixels_blanked: str = ""  # "yes" | "no" | "" (no pixel data)
    text_outside_breast: int | str = ""
    text_touches_breast: str = ""
    burned_in_annotation: str = ""
    date_shift_days: int | str = ""
    removed: int | str = ""
    replaced: int | str = ""
    emptied: int | str = ""
    uids: int | str = ""
    dates_shifted: int | str = ""

    def row(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in REPORT_COLUMNS}


def _read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return dcmread(path, force=False)
        except InvalidDicomError:
            ds = dcmread(path, force=True)  # no preamble: accepted when it parses as a data set
            if not len(ds) or "SOPClassUID" not in ds and "PixelData" not in ds:
                raise
            return ds


def _write(ds: Dataset, target: Path) -> None:
    try:
        f = open(target, "xb")  # noqa: SIM115 - exclusive create: a name taken is never overwritten
    except FileExistsError:
        raise ImageReadError(f"the export name {target.name} is taken (the same SOP instance as another file?): "
                             "not overwritten", target) from None
    try:
        with f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(f, enforce_file_format=True)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def deidentify_file(settings: DeidentifySettings, source: Source) -> FileResult:
    """De-identify one file into ``settings.out``; raises ImageReadError (or a subclass) for a file that
    cannot be done. Runs in a worker of the pool; see the module's docstring."""
    path = source.path if not isinstance(source, (str, Path)) else Path(source)
    check_file(path, settings.limits)  # before pydicom reads it whole (a deflate bomb inflates there)
    try:
        ds = _read(path)
    except (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ImageReadError(f"not a readable DICOM file ({type(exc).__name__}: {exc})", path) from exc
    deid = Deidentifier(settings.key, settings.options)
    original_uid = str(ds.get("SOPInstanceUID", "") or "")
    blanked, touches, note = False, "", ""
    objects: int | str = ""
    syntax = transfer_syntax_of(ds)  # a file without meta header: the encoding it was read in
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = syntax
    if "PixelData" in ds and settings.blank:
        outcome = blank_dataset(ds)
        blanked, note = outcome.blanked, outcome.note
        objects = "" if outcome.text_components is None else outcome.text_components
        touches = "" if outcome.text_touches_breast is None else ("yes" if outcome.text_touches_breast else "no")
    elif "PixelData" in ds:
        note = "pixels not blanked (--no-blank)"
    report = deid.deidentify(ds, pixels_blanked=blanked)
    name = deid.uid(original_uid) if original_uid else deid.uid("sha256:" + file_sha256(path))
    if "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    _write(ds, settings.out / f"{name}.dcm")
    reasons = [note] if note else []
    if "PixelData" in ds and report.burned_in_text_may_remain and not note:
        reasons.append("burned-in text may remain")
    if touches == "yes":
        reasons.append("burned-in text reaches the breast: check the image")
    return FileResult(
        source=str(path), output=f"{name}.dcm", reason="; ".join(reasons),
        pixels_blanked=("yes" if blanked else "no") if "PixelData" in ds else "",
        text_outside_breast=objects, text_touches_breast=touches, burned_in_annotation=report.burned_in_annotation,
        date_shift_days="" if report.date_shift_days is None else report.date_shift_days,
        removed=report.removed + report.private_removed, replaced=report.replaced, emptied=report.emptied,
        uids=report.uids, dates_shifted=report.dates_shifted,
    )


# --------------------------------------------------------------------------- the command
def _files(inputs: Sequence[Path], out: Path) -> Iterator[Path]:
    out_real = Path(os.path.realpath(out))
    for given in inputs:
        if given.is_dir():
            for folder, dirs, names in os.walk(given):
                dirs.sort()
                if Path(os.path.realpath(folder)) == out_real:
                    dirs.clear()
                    continue
                for name in sorted(names):
                    yield Path(folder) / name
        else:
            yield given


def _key(path: Path | None) -> bytes:
    if path is None:
        return secrets.token_bytes(32)
    if path.exists():
        key = path.read_bytes()
        if len(key) < 16:
            raise ValueError(f"{path}: the key file holds {len(key)} bytes, at least 16 are needed")
        return key
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m inference deidentify",
        description="De-identify DICOM files (DICOM PS3.15 Basic Application Level Confidentiality Profile) "
        "into OUT, one pseudonymous file per input, with a per-file report beside OUT.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="input files or folders, then the output folder")
    p.add_argument("--key-file", type=Path, help="secret key (made on first use): the same UIDs and shifts across runs")
    p.add_argument("--retain-dates", action="store_true",
                   help="Retain Longitudinal Temporal Information with Modified Dates (per-patient shift)")
    p.add_argument("--retain-patient-characteristics", action="store_true",
                   help="Retain Patient Characteristics (age, sex, size, weight, ...)")
    p.add_argument("--no-blank", action="store_true",
                   help="keep the pixels outside the breast (burned-in text may remain)")
    p.add_argument("--report", type=Path, help="the report CSV (default: OUT-report.csv beside OUT)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: the machine's cores)")
    return p


def run(args: argparse.Namespace, err: IO[str]) -> int:
    if len(args.paths) < 2:
        err.write("error: give at least one input and the output folder\n")
        return EXIT_USAGE
    *inputs, out = args.paths
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        err.write(f"error: not found: {', '.join(missing)}\n")
        return EXIT_USAGE
    report_path = args.report or out.with_name(out.name + "-report.csv")
    if Path(os.path.realpath(report_path)).parent == Path(os.path.realpath(out)):
        err.write("error: the report names the input files: keep it out of the export folder\n")
        return EXIT_USAGE
    try:
        key = _key(args.key_file)
        limits = limits_from_env()
    except (OSError, ValueError) as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    out.mkdir(parents=True, exist_ok=True)
    settings = DeidentifySettings(
        out=out, key=key, blank=not args.no_blank, limits=limits,
        options=ProfileOptions(args.retain_dates, args.retain_patient_characteristics),
    )
    failed = done = 0
    work = functools.partial(deidentify_file, settings)
    with open(report_path, "w", newline="", encoding="utf-8") as f, \
            DecodePool(workers=args.workers, decode=work) as pool:
        writer = SafeDictWriter(f, REPORT_COLUMNS, text_columns=_TEXT_COLUMNS)
        writer.writeheader()
        for source, result in pool.map(_files(inputs, out)):
            if isinstance(result, ImageReadError):
                failed += 1
                row = FileResult(source=str(source), status="error", reason=result.reason)
            else:
                done += 1
                row = result
            writer.writerow(row.row())
    err.write(f"{done} file(s) de-identified into {out}, {failed} failed; report: {report_path}\n")
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """The ``deidentify`` sub-command; returns the exit code."""
    err = sys.stderr
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.workers is not None and args.workers < 1:
        err.write("error: --workers must be at least 1\n")
        return EXIT_USAGE
    return run(args, err)
