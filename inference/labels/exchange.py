"""Export labels for training (de-identified by default) and import labels from other stores.

:func:`export_labels` writes a folder that ``python -m training finetune --manifest`` reads as is::

    manifest.csv / manifest.json   one row per image: combined label + uncertainty per task
    annotations.csv                every annotator's current label (key, annotator, task, value, ...)
    images/                        the image files the manifest names (paths relative to the folder)
    README.txt                     what the folder is and what de-identification did (and did not) do
    deidentification.csv           per copied image: pixels blanked outside the breast or why not, burned-in
                                   text found outside the breast, text reaching the breast (check those)
    original_paths.csv             only with ``identified=True``: key -> original file

Every CSV cell that a spreadsheet would run as a formula is neutralised (:mod:`inference.csvsafe`);
the readers here restore it.

De-identified (the default): images are copied as :mod:`inference.labels.deidentify` describes
(DICOM per the PS3.15 Annex E Basic Profile of :mod:`inference.imaging.confidentiality`, pixels
outside the breast blanked, each DICOM file in a decode worker of
:class:`inference.imaging.isolation.DecodePool`, so a decoder that panics, crashes or runs out of
memory on an untrusted file makes that file an export problem; PNG/TIFF/PGM re-encoded; JPEG without
metadata segments). Images whose
burned-in text reaches the breast are listed in README.txt and :attr:`ExportResult.flagged`. Keys
are pseudonyms: a DICOM's new SOPInstanceUID, else ``sha256:`` of the exported file, so the
manifest's key is the exported file's image key; the patient and study columns are keyed hashes.
Everything is derived from the store's secret, so re-exports give the same names. A DICOM that
already says ``PatientIdentityRemoved=YES`` keeps its UIDs, so labels of an exported image,
exported again from another machine, come back under the same key. Two images that would get the
same file name are an error for the second one (:attr:`ExportResult.problems`), never an overwrite.

With ``identified=True`` nothing is copied: the manifest names the original files (relative to the
folder where possible) and original_paths.csv maps keys to them, for training on the same machine.

:func:`import_labels` adds an export's annotations.csv to a store (source ``"import"``, the
exporter's annotator names kept), idempotently; :func:`import_manifest` pre-fills a store with a
label manifest's labels as suggestions (source ``"manifest"``).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from inference.csvsafe import SafeWriter, restore_row
from inference.errors import FormatError, ImageReadError, MammoReviewError
from inference.formats import TASKS, LabelRow, TaskLabel, read_label_manifest, write_label_manifest
from inference.imaging.isolation import DecodePool, settings_from_env
from inference.labels.deidentify import (
    CopiedImage,
    copy_deidentified,
    copy_dicom,
    deidentify_dataset,
    pseudo_patient,
    pseudo_study,
)
from inference.labels.records import SOURCES, SUGGESTION_SOURCES, exportable
from inference.labels.store import LabelRecord, LabelStore, combine, utc_now

__all__ = [
    "ImageLike",
    "ExportProblem",
    "ExportResult",
    "ImportResult",
    "export_labels",
    "import_labels",
    "import_manifest",
    "import_any",
    "export_store",
    "deidentify_dataset",
    "ANNOTATION_COLUMNS",
    "REPORT_COLUMNS",
]



class ImageLike(Protocol):
    """What export needs of an image (:class:`inference.imaging.studies.ImageRecord` has it)."""

    @property
    def key(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def kind(self) -> str: ...
    @property
    def patient_id(self) -> str: ...
    @property
    def study_uid(self) -> str: ...
    @property
    def laterality(self) -> str: ...


@dataclass(frozen=True)
class ExportProblem:
    key: str
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    manifest: Path
    rows: int
    annotations: int
    identified: bool
    problems: tuple[ExportProblem, ...]
    #: exported annotations by source (``person``, ``model-confirmed``, ``manifest``, ...)
    sources: dict[str, int] = field(default_factory=dict)
    #: the model's suggestions held in the store and left out (never labels, never exported)
    left_out: int = 0
    #: keys of exported images whose burned-in text reaches the breast (it may remain there): check them
    flagged: tuple[str, ...] = ()

    def describe_sources(self) -> str:
        """``"person 12, model-confirmed 3"`` (or ``"none"``)."""
        return ", ".join(f"{s} {n}" for s, n in sorted(self.sources.items())) or "none"


@dataclass(frozen=True)
class ImportResult:
    added: int
    skipped: int
    source: Path
    #: rows that were the model's guesses (older exports held them): never imported
    left_out: int = 0


ANNOTATION_COLUMNS: tuple[str, ...] = (
    "key", "annotator", "task", "value", "confidence", "status", "source", "model_version", "time",
)
#: Neutralised against spreadsheet formulas when written, restored when read (:mod:`inference.csvsafe`).
ANNOTATION_TEXT_COLUMNS: tuple[str, ...] = tuple(c for c in ANNOTATION_COLUMNS if c != "confidence")



def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(Path(path).resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return Path(path).resolve().as_posix()


_README = """mammo-review label export ({when})
Research use only. Not for diagnosis or any clinical decision.

manifest.csv / manifest.json  one row per image: each task's combined label, its uncertainty u
                              (loss weight 1 - u; empty = missing) and <task>_by: "person" when people's
                              labels made it, "suggested" when nobody confirmed the task and an imported
                              data set's label stands in. Image paths are relative to this folder.
annotations.csv               every annotator's own label: key, annotator, task, value, confidence, status,
                              source, model version, time. It names the annotators (readers), as they
                              entered their names.
{images_line}
A label is what a person confirmed, task by task: a value the person set (source "person") or a
suggestion the person explicitly confirmed (source "<suggestion>-confirmed", e.g. "model-confirmed").
The model's suggestions that nobody confirmed are not labels and are not in this folder.

This export: {labels} label(s) confirmed by people and {suggestions} suggestion(s) from imported data sets;
by source:
{counts}
The model's unconfirmed suggestions left out: {left_out}.

Combining annotators: only people's labels vote (suggestions from imported manifests count only when
nobody confirmed the task; the model's suggestions never count); "unknown" abstains; the class with the
largest summed confidence wins; u = 1 - (its summed confidence / number of voting annotators).

{deid}
"""
_SOURCE_TEXT = {
    "person": "set by a person",
    "model-confirmed": "the model's suggestion, confirmed by a person",
    "dicom-confirmed": "the DICOM header's or file name's view, confirmed by a person",
    "manifest-confirmed": "an imported data set's label, confirmed by a person",
    "import-confirmed": "an imported suggestion, confirmed by a person",
    "manifest": "an imported data set's label, not confirmed (a suggestion)",
    "import": "an imported suggestion, not confirmed",
}
_DEID_TEXT = """De-identification: DICOM files follow the DICOM PS3.15 Annex E Basic Application Level
Confidentiality Profile, every attribute of its Table E.1-1 (options: Clean Descriptors; Retain Longitudinal
Temporal Information with Modified Dates): names, IDs, birth dates, accession numbers, addresses, institution,
physician, operator, station and device identification removed or replaced by pseudonyms, dates shifted,
private tags, overlays and curves removed, UIDs replaced consistently, PatientIdentityRemoved=YES. Keys,
patient and study columns are pseudonyms derived from a secret kept in the exporting label store.
PNG/TIFF/PGM were re-encoded as PNG without text chunks; JPEG lost its EXIF/XMP/comment segments.
Burned-in text: in {blanked} of {copies} image(s) every pixel outside the breast was blanked (then
BurnedInAnnotation=NO); deidentification.csv says, per image, what was done and why not. Text burned into
the pixels inside the breast, and in images that were not blanked (PNG, JPEG, colour), may remain visible.
{flagged}
Check the images before sharing them outside your institution."""
_IDENTIFIED_TEXT = """IDENTIFIED export: no image was copied or de-identified. The manifest names the original
files; original_paths.csv maps every key to its original file. Keep this folder on the machine it was
made on; do not share it."""


def _dicom_copies(
    stack: contextlib.ExitStack, records: list[ImageLike], images: Path, secret: bytes
) -> Iterator[tuple[Path, CopiedImage | ImageReadError]]:
    """The DICOM copies, made in decode workers (a decoder that panics or crashes on an untrusted file
    is that file's problem, never the export's end), in the order of ``records``."""
    if not records:
        return iter(())
    settings = settings_from_env()
    settings["workers"] = min(settings.get("workers") or os.cpu_count() or 1, len(records))
    pool = stack.enter_context(DecodePool(**settings, decode=functools.partial(copy_dicom, images, secret)))
    copies = pool.map([Path(r.path) for r in records])
    # a cancelled export: the generator abandons the copies still running before the pool closes
    stack.callback(lambda: getattr(copies, "close", lambda: None)())
    return copies


def _copy_here(rec: ImageLike, images: Path, secret: bytes) -> CopiedImage | MammoReviewError:
    """A PNG/TIFF/PGM or JPEG copy (Pillow re-encodes or the segments are stripped), or why it failed."""
    try:
        return copy_deidentified(Path(rec.path), rec.kind, images, secret)
    except MammoReviewError as exc:
        return exc
    except (OSError, ValueError, AttributeError, TypeError, KeyError, EOFError) as exc:
        return FormatError(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__, rec.path)


def _row(rec: ImageLike, key: str, image: str, labels: list[LabelRecord], secret: bytes) -> LabelRow:
    combined = combine(labels)
    row_labels = {
        t: TaskLabel(c.value, round(c.uncertainty, 6), c.by) for t, c in combined.items() if c.value is not None
    }
    return LabelRow(
        key=key,
        image=image,
        labels=row_labels,
        laterality=rec.laterality,
        patient=pseudo_patient(secret, rec.patient_id),
        study=pseudo_study(secret, rec.study_uid),
        source="mammo-review",
    )


def export_labels(
    store: LabelStore,
    records: Iterable[ImageLike],
    folder: str | Path,
    *,
    identified: bool = False,
    only_labelled: bool = True,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ExportResult:
    """Export the store's labels of ``records`` into the new (or empty) ``folder``.

    Images that cannot be copied are reported in :attr:`ExportResult.problems` and left out; the
    rest goes on. ``only_labelled`` leaves out images nobody labelled.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FormatError("the export folder must be new or empty", folder)
    images = folder / "images"
    try:
        images.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FormatError(f"cannot create the export folder ({exc.strerror or exc})", folder) from exc
    secret = store.secret
    todo = []
    left_out = 0
    for rec in dict((r.key, r) for r in records).values():
        stored = store.labels(rec.key)
        labels = [lab for lab in stored if exportable(lab.status, lab.source)]
        left_out += len(stored) - len(labels)
        if labels or not only_labelled:
            todo.append((rec, labels))
    rows: list[LabelRow] = []
    notes: list[tuple[str, LabelRecord]] = []
    originals: list[tuple[str, str]] = []
    pseudonyms: list[tuple[str, str]] = []
    problems: list[ExportProblem] = []
    copies: list[CopiedImage] = []
    with contextlib.ExitStack() as stack:
        dicom_copies = _dicom_copies(stack, [] if identified else [r for r, _ in todo if r.kind == "dicom"],
                                     images, secret)
        for n, (rec, labels) in enumerate(todo):
            if cancelled is not None and cancelled():
                break
            if progress is not None:
                progress(n, len(todo))
            if identified:
                key, image = rec.key, _relative(rec.path, folder)
                originals.append((key, str(Path(rec.path).resolve())))
            else:
                copied = next(dicom_copies)[1] if rec.kind == "dicom" else _copy_here(rec, images, secret)
                if isinstance(copied, MammoReviewError):
                    problems.append(ExportProblem(rec.key, Path(rec.path), f"cannot export: {copied.reason}"))
                    continue
                key, image = copied.key, copied.image
                copies.append(copied)
                pseudonyms.append((key, rec.key))
            rows.append(_row(rec, key, image, labels, secret))
            notes.extend((key, lab) for lab in labels)
    if progress is not None:
        progress(len(todo), len(todo))
    manifest = write_label_manifest(folder / "manifest.csv", rows)
    with open(folder / "annotations.csv", "w", newline="", encoding="utf-8") as f:
        writer = SafeWriter(f, ANNOTATION_COLUMNS, ANNOTATION_TEXT_COLUMNS)
        writer.writeheader()
        for key, lab in notes:
            writer.writerow(
                [key, lab.annotator, lab.task, "" if lab.value is None else lab.value, f"{lab.confidence:.6g}",
                 lab.status, lab.source, lab.model_version, lab.time]
            )
    if identified:
        with open(folder / "original_paths.csv", "w", newline="", encoding="utf-8") as f:
            paths = SafeWriter(f, ("key", "original_path"), ("key", "original_path"))
            paths.writeheader()
            paths.writerows(originals)
    if not identified:
        _write_report(folder / "deidentification.csv", copies)
    if not any(images.iterdir()):
        images.rmdir()
    images_line = (
        "original_paths.csv            key -> original file (this export is IDENTIFIED)."
        if identified
        else "images/                       the de-identified image files."
    )
    sources = dict(Counter(lab.source for _, lab in notes))
    labels_total = sum(1 for _, lab in notes if lab.status == "confirmed")
    counts = "\n".join(
        f"  {src:<20} {n:>6}  {_SOURCE_TEXT.get(src, '')}" for src, n in sorted(sources.items())
    ) or "  (none)"
    (folder / "README.txt").write_text(
        _README.format(
            when=utc_now(),
            images_line=images_line,
            labels=labels_total,
            suggestions=len(notes) - labels_total,
            counts=counts,
            left_out=left_out,
            deid=_IDENTIFIED_TEXT if identified else _DEID_TEXT.format(
                blanked=sum(c.pixels_blanked for c in copies),
                copies=len(copies),
                flagged=_flagged_text(copies),
            ),
        ),
        encoding="utf-8",
    )
    if pseudonyms:
        store.remember_pseudonyms(pseudonyms)
    flagged = tuple(c.key for c in copies if c.text_touches_breast)
    return ExportResult(
        folder, manifest, len(rows), len(notes), identified, tuple(problems), sources, left_out, flagged
    )


REPORT_COLUMNS: tuple[str, ...] = (
    "key", "image", "pixels_blanked", "text_outside_breast", "text_touches_breast", "burned_in_annotation", "note",
)


def _write_report(path: Path, copies: list[CopiedImage]) -> None:
    """deidentification.csv: per exported image, what was done to its pixels (pseudonymous keys only)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = SafeWriter(f, REPORT_COLUMNS, set(REPORT_COLUMNS) - {"text_outside_breast"})
        writer.writeheader()
        for c in copies:
            writer.writerow([
                c.key, c.image, "yes" if c.pixels_blanked else "no",
                "" if c.text_outside_breast is None else c.text_outside_breast,
                "yes" if c.text_touches_breast else "no", c.burned_in_annotation, c.note,
            ])


def _flagged_text(copies: list[CopiedImage]) -> str:
    flagged = [c.image for c in copies if c.text_touches_breast]
    if not flagged:
        return "No image had burned-in text reaching the breast."
    shown = ", ".join(flagged[:10]) + (f" and {len(flagged) - 10} more" if len(flagged) > 10 else "")
    return f"CHECK these {len(flagged)} image(s): burned-in text reaches the breast and may remain inside it: {shown}."


# --------------------------------------------------------------------------- import
def _origin(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def import_labels(store: LabelStore, folder: str | Path) -> ImportResult:
    """Add the per-annotator labels of an export (its annotations.csv) to ``store``.

    Rows become history (an ``import`` action) under the exporter's annotator names, keeping their
    source (a person's label stays ``person`` or ``<suggestion>-confirmed``; suggestions become
    ``import``); rows that were the model's guesses are left out (:attr:`ImportResult.left_out`).
    Keys this store exported itself are mapped back to the original keys. Importing twice adds nothing.
    """
    folder = Path(folder)
    path = folder / "annotations.csv" if folder.is_dir() else folder
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # a quoted CR stays a CR
            text = f.read()
    except OSError as exc:
        raise FormatError(f"cannot read annotations ({exc.strerror or exc})", path) from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = {"key", "annotator", "task", "value", "confidence", "time"} - set(reader.fieldnames or ())
    if missing:
        raise FormatError(f"annotations lack column(s) {', '.join(sorted(missing))}", path)
    batch = []
    left_out = 0
    for n, raw in enumerate(reader, start=2):
        where = f"{path.name} line {n}"
        # trimmed as written, then un-neutralised (inference.csvsafe): "\tx" written as "'\tx" comes back whole
        row = restore_row({k: (v or "").strip() for k, v in raw.items() if isinstance(k, str)}, ANNOTATION_TEXT_COLUMNS)
        file_key = row["key"]
        value = row["value"] or None
        status = row.get("status") or "confirmed"
        source = _import_source(status, row.get("source", ""))
        if source is None:  # the model's guess (older exports stored them as labels): not a label
            left_out += 1
            continue
        try:
            confidence = float(row["confidence"])
        except ValueError as exc:
            raise FormatError(f"{where}: confidence {row['confidence']!r} is not a number", path) from exc
        rec = LabelRecord(
            key=store.resolve_pseudonym(file_key),
            annotator=row["annotator"],
            task=row["task"],
            value=value,
            confidence=confidence,
            status=status,
            source=source,
            model_version=row.get("model_version", ""),
            time=row["time"] or utc_now(),
        )
        origin = _origin(
            "annotation", file_key, rec.annotator, rec.task, value or "", f"{confidence:.6g}", status, rec.time
        )
        batch.append((rec, origin))
    try:
        added = store.add_imported(batch, source=None)
    except ValueError as exc:
        raise FormatError(f"bad annotation ({exc})", path) from exc
    return ImportResult(added, len(batch) - added, path, left_out)


def _import_source(status: str, source: str) -> str | None:
    """The source an imported annotation keeps: a person's label keeps its own (``person``,
    ``model-confirmed``, ...; ``person`` when the file does not say), a suggestion becomes
    ``import`` unless it names a data set's manifest; None for the model's guesses."""
    if source == "model":
        return None
    if status == "confirmed":
        return source if source in SOURCES and (source == "person" or source.endswith("-confirmed")) else "person"
    return source if source in SUGGESTION_SOURCES else "import"


def import_manifest(store: LabelStore, path: str | Path, *, annotator: str | None = None) -> ImportResult:
    """Pre-fill ``store`` with a label manifest's labels as *suggested* (source ``"manifest"``).

    They vote in the combination only where nobody confirmed the task (see :func:`combine`).
    Importing the same manifest twice adds nothing.
    """
    path = Path(path)
    rows = read_label_manifest(path)
    who = annotator or f"manifest:{path.stem}"
    now = utc_now()
    batch = []
    for row in rows:
        for task in TASKS:
            lab = row.label(task)
            if lab.value is None:
                continue
            rec = LabelRecord(row.key, who, task, lab.value, 1.0 - lab.uncertainty, "suggested", "manifest", "", now)
            batch.append((rec, _origin("manifest", who, row.key, task, lab.value, f"{lab.uncertainty:.6g}")))
    added = store.add_imported(batch, source="manifest")
    return ImportResult(added, len(batch) - added, path)


# --------------------------------------------------------------------------- the app's and the CLI's entry points
def export_store(
    store: LabelStore,
    folder: str | Path,
    opened: Iterable[ImageLike] = (),
    *,
    identified: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ExportResult:
    """Export every labelled image: the ``opened`` ones, and the others where the store last saw
    them (File > Export and ``python -m inference labels export`` both call this)."""
    records: list[ImageLike] = list(opened)
    seen = {r.key for r in records}
    records += store.images(set(store.keys()) - seen)
    return export_labels(store, records, folder, identified=identified, progress=progress, cancelled=cancelled)


def import_any(store: LabelStore, path: str | Path) -> tuple[ImportResult, str]:
    """Import an export folder (its annotations.csv) or a label manifest (as suggestions); returns
    the result and what was imported, in words (File > Import and ``labels import`` call this)."""
    path = Path(path)
    if path.is_dir() or path.name == "annotations.csv":
        return import_labels(store, path), "label(s)"
    return import_manifest(store, path), "suggestion(s) from the manifest"
