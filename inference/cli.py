"""The headless command line: ``python -m inference predict INPUT... --out predictions.csv``.

One CSV row per image (status ok, error or skipped, with the reason), then per study one row per
breast and one for the exam (docs/formats.md, "Predictions CSV"); optionally the latent vectors
(``--embeddings``) and the maps in original coordinates (``--maps``, "Maps folder"). A bad file
never stops the run: every image is decoded and preprocessed in the worker processes of
:class:`inference.model.pipeline.Pipeline` (a crashing decoder costs that file a row with the reason),
the model runs here, rows are written in input order. Exit codes: 0 all went well, 1 some file
failed, 2 usage or model error, 3 an unexpected error (a bug: please report it), 130 interrupted.
Warnings (pydicom, numpy) never reach the terminal: they go to the log, which ``--verbose`` shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from inference.csvsafe import SafeDictWriter
from inference.errors import ImageReadError, MammoReviewError
from inference.formats import TASK_CLASSES, Embeddings, write_embeddings
from inference.imaging.isolation import MEMORY_OPTION, TIMEOUT_OPTION
from inference.imaging.limits import LIMIT_SETTINGS, Limits, limits_from_env
from inference.imaging.pilview import float_image
from inference.imaging.studies import duplicate_reason
from inference.model.pipeline import Pipeline, Prepared
from inference.model.predict import ModelInput, Prediction, PredictionSummary, predict_inputs
from inference.model.session import DEVICES, ModelSession
from inference.model.summary import BreastSummary, ExamSummary, summarise

if TYPE_CHECKING:
    from inference.imaging.studies import ImageRecord, Problem, Study

__all__ = ["main", "CSV_COLUMNS", "CSV_TEXT_COLUMNS", "MAPS_INDEX_COLUMNS", "MAPS_INDEX_TEXT_COLUMNS", "map_stem"]

CSV_COLUMNS: tuple[str, ...] = (
    "level",
    "key",
    "path",
    "status",
    "error",
    "patient_id",
    "study_uid",
    "laterality",
    "laterality_source",
    "view",
    "view_source",
    "p_malignant",
    "p_malignant_std",
    *[f"p_acr_{c}" for c in TASK_CLASSES["acr"]],
    *[f"p_density_{c}" for c in TASK_CLASSES["density"]],
    *[f"p_view_{c}" for c in TASK_CLASSES["view"]],
    "model_version",
)
#: The columns holding text (neutralised against formulas, inference.csvsafe); the others hold numbers.
CSV_TEXT_COLUMNS: frozenset[str] = frozenset(c for c in CSV_COLUMNS if not c.startswith("p_"))
MAPS_INDEX_COLUMNS: tuple[str, ...] = (
    "key", "path", "evidence", "error", "preview", "rows", "cols", "evidence_scale", "lesion"
)
MAPS_INDEX_TEXT_COLUMNS: frozenset[str] = frozenset(("key", "path", "evidence", "error", "preview", "lesion"))
_LOG = logging.getLogger("inference.cli")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


# --------------------------------------------------------------------------- progress
class ProgressBar:
    """A plain text progress bar on a stream (stderr): redrawn in place on a terminal, a single
    final line otherwise (logs stay readable)."""

    def __init__(self, stream: IO[str] | None, label: str, width: int = 30) -> None:
        self.stream, self.label, self.width = stream, label, width
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._last = 0.0
        self._start = time.monotonic()
        self._shown = 0
        self._finished = False

    def __call__(self, done: int, total: int) -> None:
        if self.stream is None or self._finished:
            return
        now = time.monotonic()
        final = done >= total
        if not final and (not self._tty or now - self._last < 0.1):
            return
        self._last = now
        frac = done / total if total else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        rate = done / (now - self._start) if now > self._start and done else 0.0
        text = f"{self.label} [{bar}] {done}/{total}" + (f" {rate:.1f}/s" if rate else "")
        if self._tty:
            self.stream.write("\r" + text.ljust(self._shown))
            self._shown = len(text)
        else:
            self.stream.write(text)
        if final:
            self.stream.write("\n")
            self._finished = True
        self.stream.flush()


# --------------------------------------------------------------------------- rows
def _num(v: float | None) -> str:
    return "" if v is None or np.isnan(v) else f"{v:.6f}"


def _probs(row: dict[str, str], task: str, values: Sequence[float]) -> None:
    if values:
        for c, v in zip(TASK_CLASSES[task], values, strict=False):
            row[f"p_{task}_{c}"] = _num(v)


def _image_row(rec: ImageRecord, lat: str, lat_src: str) -> dict[str, str]:
    row = dict.fromkeys(CSV_COLUMNS, "")
    row.update(
        level="image",
        key=rec.key,
        path=str(rec.path),
        patient_id=rec.patient_id,
        study_uid=rec.study_uid,
        laterality=lat,
        laterality_source=lat_src,
        view=rec.view,
        view_source=rec.view_source,
    )
    return row


def _prediction_row(row: dict[str, str], p: Prediction) -> dict[str, str]:
    row.update(status="ok", p_malignant=_num(p.p_malignant), p_malignant_std=_num(p.p_malignant_std))
    row.update(model_version=p.model_version)
    for task in ("acr", "density", "view"):
        _probs(row, task, p.probabilities.get(task, ()))
    return row


def _summary_row(s: BreastSummary | ExamSummary, level: str, path: str) -> dict[str, str]:
    row = dict.fromkeys(CSV_COLUMNS, "")
    row.update(
        level=level,
        key=s.key,
        path=path,
        status="ok",
        patient_id=s.patient_id,
        study_uid=s.study_uid,
        laterality=s.laterality if isinstance(s, BreastSummary) else "",
        p_malignant=_num(s.p_malignant),
        p_malignant_std=_num(s.p_malignant_std),
        model_version=s.model_version,
    )
    _probs(row, "acr", s.acr)
    _probs(row, "density", s.density)
    return row


# --------------------------------------------------------------------------- maps
def map_stem(key: str) -> str:
    """A file-name-safe stem for an image key (``sha256:ab..`` -> ``sha256_ab..``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "image"
    return stem[:150]


def _fit(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    img = float_image(m).resize((shape[1], shape[0]), Image.Resampling.BOX)
    return np.asarray(img)


def preview_image(thumb: np.ndarray, evidence: np.ndarray | None, error: np.ndarray | None) -> Image.Image:
    """Three panels side by side: the image, the evidence over it (red toward malignant, blue
    away), the reconstruction error (brighter = worse)."""
    grey = (thumb * 255.0).astype(np.uint8)
    panels = [np.stack([grey] * 3, axis=-1)]
    base = np.stack([thumb * 0.75] * 3, axis=-1)
    if evidence is not None:
        e = _fit(evidence, thumb.shape)
        scale = float(np.abs(e).max()) or 1.0
        pos, neg = np.clip(e / scale, 0, 1), np.clip(-e / scale, 0, 1)
        over = base.copy()
        over[..., 0] = np.clip(over[..., 0] + pos, 0, 1)
        over[..., 2] = np.clip(over[..., 2] + neg, 0, 1)
        panels.append((over * 255).astype(np.uint8))
    if error is not None:
        r = _fit(error, thumb.shape)
        top = float(np.percentile(r, 99.5)) or 1.0
        g = (np.clip(r / top, 0, 1) * 255).astype(np.uint8)
        panels.append(np.stack([g] * 3, axis=-1))
    gap = np.full((thumb.shape[0], 4, 3), 40, np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [gap, p]
    return Image.fromarray(np.concatenate(row, axis=1), mode="RGB")


def _float16(m: np.ndarray) -> np.ndarray:
    """float16 with magnitudes below its normal range (2**-14) set to 0: they carry nothing at this
    precision, and converting subnormals is ~30x slower."""
    out = np.where(np.abs(m) < 2.0**-14, np.float32(0.0), m)
    return out.astype(np.float16)


class MapsWriter:
    """Writes ``<stem>.evidence.npy``, ``<stem>.error.npy``, ``<stem>.lesion.npy`` when the model has
    a lesion output (float16, original grid), ``<stem>.png``
    and a line of ``index.csv`` per image. The evidence is stored times ``evidence_scale`` (the number
    of cells of its ``H/16`` grid), which brings it into float16's range whatever the model height."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._index = open(folder / "index.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise MammoReviewError(f"cannot write the maps folder ({exc.strerror or exc})", folder) from exc
        self._csv = SafeDictWriter(self._index, MAPS_INDEX_COLUMNS, MAPS_INDEX_TEXT_COLUMNS)
        self._csv.writeheader()
        self._stems: set[str] = set()

    def _stem(self, key: str) -> str:
        stem, n = map_stem(key), 1
        base = stem
        while stem in self._stems:
            n += 1
            stem = f"{base}-{n}"
        self._stems.add(stem)
        return stem

    def write(self, rec: ImageRecord, p: Prediction, thumb: np.ndarray) -> None:
        stem = self._stem(p.key)
        evidence = p.evidence_original()
        error = p.error_map_original()
        scale = float(p.evidence.size) if p.evidence is not None else 1.0
        names = {"evidence": "", "error": "", "lesion": ""}
        maps = (("evidence", evidence, scale), ("error", error, 1.0), ("lesion", p.lesion_original(), 1.0))
        for name, m, factor in maps:
            if m is not None:
                np.save(self.folder / f"{stem}.{name}.npy", _float16(m * np.float32(factor)))
                names[name] = f"{stem}.{name}.npy"
        preview_image(thumb, evidence, error).save(self.folder / f"{stem}.png", optimize=True)
        rows, cols = p.geometry.original_shape
        self._csv.writerow(
            {"key": p.key, "path": str(rec.path), "preview": f"{stem}.png", "rows": rows, "cols": cols,
             "evidence_scale": f"{scale:g}", **names}  # fmt: skip
        )
        self._index.flush()

    def close(self) -> None:
        self._index.close()


# --------------------------------------------------------------------------- the run
@dataclasses.dataclass
class _Pending:
    record: ImageRecord
    row: dict[str, str]
    item: ModelInput
    thumb: np.ndarray | None


def _source_of(path: Path, inputs: Sequence[Path]) -> str:
    """The command-line input an image was found under (its name), for the embeddings' metadata."""
    for src in inputs:
        try:
            path.resolve().relative_to(src.resolve())
        except ValueError:
            continue
        return src.name or str(src)
    return path.parent.name


class _Run:
    """One ``predict`` run: writes rows as studies complete, keeps only the latent vectors."""

    def __init__(self, session: ModelSession, writer: SafeDictWriter, maps: MapsWriter | None,
                 inputs: Sequence[Path], batch_size: int, bar: ProgressBar, total: int) -> None:  # fmt: skip
        self.session, self.writer, self.maps, self.inputs = session, writer, maps, inputs
        self.batch_size, self.bar, self.total = batch_size, bar, total
        self.done = self.failed = 0
        self.keys: list[str] = []
        self.zs: list[np.ndarray] = []
        self.paths: list[str] = []
        self.meta: dict[str, list[str]] = {"laterality": [], "view": [], "source": []}
        self._pending: list[_Pending] = []
        self._slim: list[PredictionSummary] = []
        self._lateralities: dict[str, str] = {}

    def problem(self, problem: Problem) -> None:
        row = dict.fromkeys(CSV_COLUMNS, "")
        status = "skipped" if problem.skipped else "error"
        row.update(level="image", path=str(problem.path), status=status, error=problem.reason)
        self.writer.writerow(row)
        self.failed += 0 if problem.skipped else 1

    def study(self, study: Study, results: Iterator[tuple[ImageRecord, Prepared | ImageReadError]],
              copies: Mapping[str, tuple[ImageRecord, ...]]) -> None:  # fmt: skip
        """Predict a study's images as the workers deliver them (``results``: the pipeline's, each
        image followed by its ``copies``), then write its breast and exam rows."""
        self._slim, self._lateralities = [], {}
        for rec in study.images:
            found = []
            for expected in (rec, *copies.get(rec.key, ())):
                got, result = next(results)
                if got is not expected:
                    raise RuntimeError(f"the pipeline returned {got.path} for {expected.path}")
                found.append((got, result))
            self._copies(found)
            if len(self._pending) >= self.batch_size:
                self._flush()
        self._flush()
        breasts, exams = summarise(study.images, self._slim, self._lateralities)
        path_of = {r.key: str(r.path) for r in study.images}
        for b in breasts:
            self.writer.writerow(_summary_row(b, "breast", path_of.get(b.source_key, "")))
        for e in exams:
            self.writer.writerow(_summary_row(e, "exam", path_of.get(e.source_key, "")))

    def _copies(self, found: list[tuple[ImageRecord, Prepared | ImageReadError]]) -> None:
        """One image in one or more files (same SOP instance): the first readable copy is predicted,
        the others say so; when none is readable, each file gets its own error."""
        readable = [i for i, (_, res) in enumerate(found) if isinstance(res, Prepared) and res.item is not None]
        if not readable:
            for rec, result in found:
                self._image(rec, result)
            return
        chosen, result = found[readable[0]]
        self._image(chosen, result)
        for rec, other in found:
            if rec is not chosen:
                row = _image_row(rec, rec.laterality, rec.laterality_source)
                why = duplicate_reason(rec, chosen.path)
                if isinstance(other, ImageReadError):
                    why += f" (this copy: {other.reason})"
                row.update(status="skipped", error=why)
                self.writer.writerow(row)

    def _image(self, rec: ImageRecord, result: Prepared | ImageReadError) -> None:
        from inference.imaging.decode import resolve_laterality

        lat, lat_src = rec.laterality, rec.laterality_source
        if isinstance(result, ImageReadError):
            reason = result.reason
        else:
            lat, lat_src = resolve_laterality(rec, pixel_laterality=result.pixel_laterality)
            if result.item is not None:
                self._lateralities[rec.key] = lat
                self._pending.append(_Pending(rec, _image_row(rec, lat, lat_src), result.item, result.preview))
                return
            reason = result.problem
        row = _image_row(rec, lat, lat_src)
        row.update(status="error", error=reason)
        self.writer.writerow(row)
        self.failed += 1
        self.done += 1
        self.bar(self.done, self.total)

    def _flush(self) -> None:
        if not self._pending:
            return
        items = [p.item for p in self._pending]
        preds = predict_inputs(self.session, items, self.batch_size, maps=self.maps is not None)
        for pend, pred in zip(self._pending, preds, strict=True):
            self.writer.writerow(_prediction_row(pend.row, pred))
            if self.maps is not None and pend.thumb is not None:
                self.maps.write(pend.record, pred, pend.thumb)
            if pred.z.size:
                self.keys.append(pred.key)
                self.zs.append(pred.z)
                self.paths.append(str(pend.record.path))
                self.meta["laterality"].append(pend.row["laterality"])
                self.meta["view"].append(pend.record.view)
                self.meta["source"].append(_source_of(pend.record.path, self.inputs))
            self._slim.append(pred.without_maps())  # the summaries need no maps
            self.done += 1
            self.bar(self.done, self.total)
        self._pending.clear()

    def embeddings(self) -> Embeddings:
        z = np.stack(self.zs) if self.zs else np.zeros((0, self.session.manifest.latent_dim), np.float32)
        meta = {k: tuple(v) for k, v in self.meta.items()}
        return Embeddings(
            keys=tuple(self.keys), z=z, model_version=self.session.version, paths=tuple(self.paths), meta=meta
        )


def run_predict(args: argparse.Namespace, err: IO[str]) -> int:
    """The ``predict`` command; raises MammoReviewError for model and output errors."""
    from inference.imaging.studies import scan

    log = err if not args.quiet else None
    limits = _limits(args)
    session = ModelSession.load(args.model, device=args.device, threads=args.threads)
    batch_size = args.batch_size or session.default_batch_size
    if log:
        threads = "" if session.device == "cuda" else f", {session.threads} threads"
        log.write(f"model {session.manifest.name} {session.version} (input height {session.height}) on "
                  f"{session.device}{threads}; research use only, not for diagnosis\n")  # fmt: skip
        if session.notice:
            log.write(session.notice + "\n")

    inputs = [Path(p) for p in args.inputs]
    studyset = scan(inputs, progress=ProgressBar(log, "scan   "))
    out_path = Path(args.out)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_file = open(out_path, "w", newline="", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise MammoReviewError(f"cannot write the predictions ({exc.strerror or exc})", out_path) from exc
    maps = MapsWriter(Path(args.maps)) if args.maps else None
    total = len(studyset.images)
    try:
        pipeline = Pipeline(limits, workers=args.workers, memory_limit_mb=args.decode_memory_mb,
                            timeout_s=args.decode_timeout)  # fmt: skip
    except ValueError as exc:  # a malformed MAMMO_DECODE_* variable
        out_file.close()
        raise MammoReviewError(str(exc)) from None
    try:
        writer = SafeDictWriter(out_file, CSV_COLUMNS, CSV_TEXT_COLUMNS)
        writer.writeheader()
        run = _Run(session, writer, maps, inputs, batch_size, ProgressBar(log, "predict"), total)
        copies = studyset.duplicates
        in_rows = {c.path for found in copies.values() for c in found}  # their lines come with the image's
        for problem in studyset.problems:
            if problem.path not in in_rows:
                run.problem(problem)
        run.bar(0, total)
        records = (r for study in studyset.studies for rec in study.images for r in (rec, *copies.get(rec.key, ())))
        results = pipeline.prepared(records, session.height, preview=maps is not None)
        for study in studyset.studies:
            run.study(study, results, copies)
            out_file.flush()
    finally:
        pipeline.close()
        out_file.close()
        if maps is not None:
            maps.close()
    if args.embeddings:
        try:
            write_embeddings(args.embeddings, run.embeddings())
        except OSError as exc:
            raise MammoReviewError(f"cannot write the embeddings ({exc.strerror or exc})", args.embeddings) from exc
    if total == 0 and not studyset.problems:
        err.write(f"error: no image found under {', '.join(str(p) for p in inputs)}\n")
        return EXIT_FAILED
    if log:
        log.write(f"{total} image(s), {run.failed} failed; predictions in {out_path}\n")
    return EXIT_FAILED if run.failed else EXIT_OK


# --------------------------------------------------------------------------- entry point
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit code for usage errors is 2, as ours
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m inference", description="mammo-review runtime (research use only, not for diagnosis)."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("predict", help="predict every image under the given files and folders")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="DICOM / PNG / JPEG / TIFF / PGM files or folders")
    p.add_argument("--out", required=True, metavar="CSV", help="where to write the predictions CSV")
    p.add_argument("--embeddings", metavar="NPZ", help="also write the latent vectors (.npz)")
    p.add_argument("--maps", metavar="DIR",
                   help="also write evidence, reconstruction-error and (when the model has it) lesion maps here")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto (CUDA when available), cpu or cuda")
    p.add_argument("--model", metavar="ONNX", help="a model other than the bundled one (its .json beside it)")
    p.add_argument("--batch-size", type=_positive, default=None, help="images per run (default: 1 on CPU, 8 on CUDA)")
    p.add_argument("--threads", type=_positive, default=None, help="CPU threads (default: physical cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="show warnings and the log on the terminal")
    p.add_argument("--workers", type=_positive, default=None,
                   help="decode worker processes (default: MAMMO_DECODE_WORKERS, else the number of CPUs)")
    p.add_argument(MEMORY_OPTION, type=_positive, default=None, metavar="MB",
                   help="memory one decode may take (default: MAMMO_DECODE_MEMORY_MB, else 4096)")
    p.add_argument(TIMEOUT_OPTION, type=_positive, default=None, metavar="S",
                   help="seconds one decode may take (default: MAMMO_DECODE_TIMEOUT_S, else 120)")
    for field, (env, option) in LIMIT_SETTINGS.items():
        default = getattr(Limits(), field)
        p.add_argument(option, type=_positive, default=None, dest=field,
                       help=f"{field.replace('_', ' ')} of a DICOM file (default: {env}, else {default:g})")
    sub.add_parser("phantom", help="write synthetic phantom DICOM studies (see: phantom --help)", add_help=False)
    sub.add_parser("labels", help="import, export and count labels (see: labels --help)", add_help=False)
    sub.add_parser("deidentify", help="de-identify DICOM files IN... into OUT (see: deidentify --help)", add_help=False)
    sub.add_parser("pacs", help="query and retrieve from a PACS (see: pacs --help)", add_help=False)  # issue 17
    return parser


def _limits(args: argparse.Namespace) -> Limits:
    """The header limits: the options', else the environment's, else the defaults."""
    try:
        base = limits_from_env()
    except ValueError as exc:
        raise MammoReviewError(str(exc)) from None
    given = {field: getattr(args, field) for field in LIMIT_SETTINGS if getattr(args, field, None) is not None}
    return dataclasses.replace(base, **given)


def _log_to_terminal(verbose: bool, err: IO[str]) -> logging.Handler:
    """Warnings go to the log (``logging.captureWarnings``); the log reaches ``err`` only when verbose."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    handler: logging.Handler = logging.StreamHandler(err) if verbose else logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    return handler


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not positive")
    return n


def _phantom(argv: Sequence[str]) -> int:
    try:
        from inference.phantoms import generator as phantom
    except ImportError:
        sys.stderr.write("error: the phantom generator is not available in this installation\n")
        return EXIT_USAGE
    entry: Callable[..., Any] | None = getattr(phantom, "main", None)
    if entry is None:
        sys.stderr.write("error: the phantom generator has no command line\n")
        return EXIT_USAGE
    result = entry(list(argv))
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (never raises for expected failures)."""
    multiprocessing.freeze_support()  # a PyInstaller bundle runs the decode workers through this entry
    argv = list(sys.argv[1:] if argv is None else argv)
    err = sys.stderr
    try:
        if argv and argv[0] == "phantom":
            return _phantom(argv[1:])
        if argv and argv[0] == "labels":
            from inference.labels.cli import main as labels_main

            return labels_main(argv[1:])
        if argv and argv[0] == "deidentify":  # issue 13: its own parser (inference.deidentify_cli)
            from inference.deidentify_cli import main as deidentify
            return deidentify(argv[1:])
        # --- issue 17 (PACS): `pacs ...` and `predict --from-pacs` live in inference/pacs/cli.py
        if argv and argv[0] == "pacs":
            from inference.pacs.cli import main as pacs_main

            return pacs_main(argv[1:])
        if argv and argv[0] == "predict" and any(a.split("=")[0] == "--from-pacs" for a in argv):
            from inference.pacs.cli import predict_from_pacs

            return predict_from_pacs(argv[1:], build_parser, run_predict, err)
        # --- end issue 17
        if argv and argv[0] == "predict" and any(a.split("=")[0] == "--engine" for a in argv):  # issue 16: Ray
            from inference.cluster.ray_engine import main as engine_main

            return engine_main(argv[1:], build_parser, err)
        args = build_parser().parse_args(argv)
        level = logging.getLogger().level
        handler = _log_to_terminal(args.verbose, err)
        try:
            return run_predict(args, err)
        finally:  # an in-process caller (a test, the PACS command) gets its logging back
            logging.getLogger().removeHandler(handler)
            logging.getLogger().setLevel(level)
            logging.captureWarnings(False)
    except MammoReviewError as exc:
        err.write(f"\nerror: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("\ninterrupted\n")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    except Exception as exc:
        err.write(
            f"\nunexpected error: {type(exc).__name__}: {exc}\n(this is a bug in mammo-review; please report it)\n"
        )
        return EXIT_BUG
