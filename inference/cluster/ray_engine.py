"""``python -m inference predict ... --engine ray [--address ADDR]``: the same scoring on a Ray cluster.

The driver scans the inputs (headers only), as the plain command does. Ray Data then runs two stages:
CPU tasks that decode and preprocess each image (:func:`prepare_record`, the plain command's own
steps), feeding a pool of model actors that each hold one ONNX Runtime session and call
:func:`~inference.model.predict.predict_inputs`. Actors take ``num_gpus=1`` where the cluster has GPUs,
else a fraction of a CPU, so the decode tasks always have CPUs left (a whole-CPU actor on a 2-CPU
machine starves the read stage and the job hangs).

Results stream back to the driver, which writes them as JSON-lines shards into a folder
(``--shards``, default ``<out>.shards``), one atomic file per batch, keyed by the image key. A killed
run keeps its shards; the next run with the same folder scores only the images that have none.
When every image has a result, the shards are merged into the same ``predictions.csv`` the plain
command writes: the same columns and values, the image rows of each study in scan order followed
by its breast and exam rows (the plain command writes a study's failed images before its scored
ones). Images must sit on a path every node can read (a shared file system); the model too when
``--model`` is given (the bundled one ships with the package).

Ray is imported here only: it is the optional ``[cluster]`` extra and never part of the desktop bundle.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from inference.errors import MammoReviewError
from inference.formats import Embeddings, write_embeddings
from inference.model.predict import ModelInput, PredictionSummary, predict_inputs
from inference.model.preprocess import Geometry
from inference.model.session import ModelSession
from inference.model.summary import summarise

if TYPE_CHECKING:
    from inference.imaging.studies import ImageRecord, StudySet

__all__ = ["main", "run_ray", "prepare_record", "read_shards", "ENGINE_ARGS"]

ENGINE_ARGS = ("--engine", "--address", "--shards")
_DECODE_BATCH = 4  # images per decode task
_SHARD_ROWS = 16  # results per shard file (what a killed run can lose at most, per actor)


# --------------------------------------------------------------------------- the two stages
def prepare_record(rec: ImageRecord, height: int) -> tuple[str, str, ModelInput | None, str]:
    """Decode and preprocess one image with the plain command's worker function
    (:func:`inference.model.pipeline.work`: header limits, decode, preprocess): (laterality, its
    source, the model input or None, the error reason or "")."""
    from inference.imaging.decode import resolve_laterality
    from inference.imaging.limits import limits_from_env
    from inference.model.pipeline import Request, work

    lat, lat_src = rec.laterality, rec.laterality_source
    try:
        prepared = work(Request(rec, height, limits_from_env()))
        lat, lat_src = resolve_laterality(rec, pixel_laterality=prepared.pixel_laterality)
        return lat, lat_src, prepared.item, prepared.problem
    except MammoReviewError as exc:
        return lat, lat_src, None, exc.reason
    except Exception as exc:  # a decoder's own error: reported for this file, the run goes on
        return lat, lat_src, None, f"unexpected error ({type(exc).__name__}: {exc})"


def _decode_batch(batch: dict[str, Any], height: int) -> dict[str, Any]:
    """Ray Data CPU stage: pickled records in, pickled (record, laterality, input, error) out."""
    out = [pickle.dumps((rec, *prepare_record(rec, height))) for rec in map(pickle.loads, batch["record"])]
    return {"prepared": np.array(out, dtype=object)}


class _Scorer:
    """Ray Data actor stage: one ONNX Runtime session per actor, rows and summaries out as JSON."""

    def __init__(self, model: str | None, device: str, threads: int | None, batch_size: int | None) -> None:
        self.session = ModelSession.load(model, device=device, threads=threads)
        self.batch_size = batch_size or self.session.default_batch_size

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from inference.cli import _image_row, _prediction_row

        prepared = [pickle.loads(p) for p in batch["prepared"]]
        items = [p[3] for p in prepared if p[3] is not None and not p[4]]
        preds = iter(predict_inputs(self.session, items, self.batch_size, maps=False))  # rows and z only
        lines = []
        for rec, lat, lat_src, item, reason in prepared:
            row = _image_row(rec, lat, lat_src)
            result: dict[str, Any] = {"key": rec.key, "laterality": lat}
            if reason or item is None:
                row.update(status="error", error=reason)
            else:
                pred = next(preds)
                row = _prediction_row(row, pred)
                result["summary"] = _summary_json(pred.without_maps())
            result["row"] = row
            lines.append(json.dumps(result))
        return {"line": np.array(lines, dtype=object)}


def _summary_json(p: PredictionSummary) -> dict[str, Any]:
    g = p.geometry
    return {
        "key": p.key,
        "model_version": p.model_version,
        "probabilities": {t: list(v) for t, v in p.probabilities.items()},
        "p_malignant": p.p_malignant,
        "p_malignant_mc_mean": p.p_malignant_mc_mean,
        "p_malignant_std": p.p_malignant_std,
        "z": [float(v) for v in p.z],
        "geometry": [g.original_shape, g.flipped, g.crop, g.content_shape, g.shape],
    }


def _summary_from(d: dict[str, Any]) -> PredictionSummary:
    shape, flipped, crop, content, padded = d["geometry"]
    return PredictionSummary(
        key=d["key"],
        model_version=d["model_version"],
        probabilities={t: tuple(v) for t, v in d["probabilities"].items()},
        p_malignant=d["p_malignant"],
        p_malignant_mc_mean=d["p_malignant_mc_mean"],
        p_malignant_std=d["p_malignant_std"],
        z=np.asarray(d["z"], np.float32),
        geometry=Geometry(tuple(shape), bool(flipped), tuple(crop), tuple(content), tuple(padded)),
    )


# --------------------------------------------------------------------------- shards
def read_shards(folder: Path) -> dict[str, dict[str, Any]]:
    """Every result in the shard folder, by image key (the latest shard wins for a key)."""
    results: dict[str, dict[str, Any]] = {}
    for shard in sorted(folder.glob("shard-*.jsonl")):
        with open(shard, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    result = json.loads(line)
                    results[result["key"]] = result
    return results


def _write_shard(folder: Path, run_id: str, n: int, lines: Iterable[str]) -> None:
    """One shard, whole or not at all (written aside, then renamed)."""
    final = folder / f"shard-{run_id}-{n:06d}.jsonl"
    tmp = folder / f".{final.name}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, final)


def _check_folder(folder: Path, version: str, height: int) -> None:
    """Shards of one model only: a folder started with another model is refused, not mixed in."""
    folder.mkdir(parents=True, exist_ok=True)
    run_file = folder / "run.json"
    want = {"model_version": version, "height": height}
    if run_file.exists():
        have = json.loads(run_file.read_text(encoding="utf-8"))
        if have != want:
            raise MammoReviewError(
                f"the shards there come from model {have.get('model_version')} at height {have.get('height')}, "
                f"not {version} at {height}; remove the folder or pass another --shards",
                folder,
            )
    else:
        run_file.write_text(json.dumps(want), encoding="utf-8")


# --------------------------------------------------------------------------- the run
def _actors(ray: Any, threads: int | None) -> tuple[dict[str, Any], str, int]:
    """The actor pool's resources: one actor per GPU, else CPU actors taking half a CPU each, one
    per two CPUs (the rest of each CPU runs decode tasks)."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return {"num_gpus": 1, "concurrency": gpus}, "cuda", 0
    cpus = int(resources.get("CPU", 1))
    return {"num_cpus": 0.5, "concurrency": max(1, cpus // 2)}, "cpu", threads or 1


def _score(
    ray: Any, todo: Sequence[ImageRecord], args: argparse.Namespace, height: int, folder: Path, log: IO[str] | None
) -> None:
    import ray.data  # noqa: F401  (the Data library, [cluster] extra)

    pool, device, threads = _actors(ray, args.threads)
    if args.device == "cpu":
        pool, device = {"num_cpus": 0.5, "concurrency": pool["concurrency"]}, "cpu"
    items = [{"record": pickle.dumps(rec)} for rec in todo]
    blocks = max(1, math.ceil(len(items) / _DECODE_BATCH))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(_decode_batch, fn_kwargs={"height": height}, batch_size=_DECODE_BATCH, num_cpus=1)
    ds = ds.map_batches(
        _Scorer,
        fn_constructor_kwargs={
            "model": args.model,
            "device": device,
            "threads": threads or None,
            "batch_size": args.batch_size,
        },
        batch_size=_SHARD_ROWS,
        **pool,
    )
    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
    done = 0
    for n, batch in enumerate(ds.iter_batches(batch_size=None, batch_format="numpy")):
        lines = [str(line) for line in batch["line"]]
        _write_shard(folder, run_id, n, lines)
        done += len(lines)
        if log:
            log.write(f"\rray: {done}/{len(todo)} scored")
            log.flush()
    if log and todo:
        log.write("\n")


def _merge(
    studyset: StudySet, results: dict[str, dict[str, Any]], out: IO[str], inputs: Sequence[Path]
) -> tuple[int, Embeddings | None]:
    """The predictions CSV from the results: problems first, then per study its image rows in scan
    order and its breast and exam rows, as the plain command does. Returns the failures and the
    latent vectors."""
    from inference.cli import CSV_COLUMNS, CSV_TEXT_COLUMNS, _source_of, _summary_row
    from inference.csvsafe import SafeDictWriter

    writer = SafeDictWriter(out, CSV_COLUMNS, CSV_TEXT_COLUMNS)
    writer.writeheader()
    failed = 0
    for problem in studyset.problems:
        row = dict.fromkeys(CSV_COLUMNS, "")
        row.update(level="image", path=str(problem.path), status="skipped" if problem.skipped else "error")
        row["error"] = problem.reason
        writer.writerow(row)
        failed += 0 if problem.skipped else 1
    keys: list[str] = []
    zs: list[np.ndarray] = []
    paths: list[str] = []
    meta: dict[str, list[str]] = {"laterality": [], "view": [], "source": []}
    for study in studyset.studies:
        slim, lateralities = [], {}
        for rec in study.images:
            result = results[rec.key]
            writer.writerow(result["row"])
            if "summary" in result:
                summary = _summary_from(result["summary"])
                slim.append(summary)
                lateralities[rec.key] = result["laterality"]
                if summary.z.size:
                    keys.append(rec.key)
                    zs.append(summary.z)
                    paths.append(str(rec.path))
                    meta["laterality"].append(result["row"]["laterality"])
                    meta["view"].append(rec.view)
                    meta["source"].append(_source_of(rec.path, inputs))
            else:
                failed += 1
        breasts, exams = summarise(study.images, slim, lateralities)
        path_of = {r.key: str(r.path) for r in study.images}
        for b in breasts:
            writer.writerow(_summary_row(b, "breast", path_of.get(b.source_key, "")))
        for e in exams:
            writer.writerow(_summary_row(e, "exam", path_of.get(e.source_key, "")))
    version = next((r["summary"]["model_version"] for r in results.values() if "summary" in r), "")
    if not zs:
        return failed, None
    columns = {k: tuple(v) for k, v in meta.items()}
    return failed, Embeddings(tuple(keys), np.stack(zs), version, paths=tuple(paths), meta=columns)


def run_ray(args: argparse.Namespace, err: IO[str]) -> int:
    """``predict`` on Ray: score what the shard folder lacks, then merge into ``--out``."""
    import ray

    from inference.imaging.studies import scan

    if args.maps:
        raise MammoReviewError("--maps is not available with --engine ray (use the plain command for maps)")
    log = err if not args.quiet else None
    manifest_session = ModelSession.load(args.model, device="cpu", threads=1)  # the version and height
    version, height = manifest_session.version, manifest_session.height
    del manifest_session
    inputs = [Path(p) for p in args.inputs]
    studyset = scan(inputs)
    out_path = Path(args.out)
    folder = Path(args.shards) if args.shards else out_path.with_name(out_path.name + ".shards")
    _check_folder(folder, version, height)
    results = read_shards(folder)
    todo = [rec for rec in studyset.images if rec.key not in results]
    if log:
        log.write(f"ray: {len(studyset.images)} image(s), {len(studyset.images) - len(todo)} already in {folder}, "
                  f"{len(todo)} to score; research use only, not for diagnosis\n")  # fmt: skip
    if todo:
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=args.address, log_to_driver=False, include_dashboard=False)
        try:
            _score(ray, todo, args, height, folder, log)
        finally:
            if started_here:
                ray.shutdown()
        results = read_shards(folder)
    missing = [rec.key for rec in studyset.images if rec.key not in results]
    if missing:
        raise MammoReviewError(f"{len(missing)} image(s) have no result after the run; run the command again")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with open(out_path, "w", newline="", encoding="utf-8") as out:
            failed, embeddings = _merge(studyset, results, out, inputs)
    except OSError as exc:
        raise MammoReviewError(f"cannot write the predictions ({exc.strerror or exc})", out_path) from exc
    if args.embeddings and embeddings is not None:
        write_embeddings(args.embeddings, embeddings)
    total = len(studyset.images)
    if total == 0 and not studyset.problems:
        err.write(f"error: no image found under {', '.join(str(p) for p in inputs)}\n")
        return 1
    if log:
        log.write(f"{total} image(s), {failed} failed; predictions in {out_path}\n")
    return 1 if failed else 0


def main(argv: Sequence[str], build_parser: Callable[[], argparse.ArgumentParser], err: IO[str]) -> int:
    """``predict ... --engine ray``: the plain command's arguments plus --engine, --address, --shards."""
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--engine", choices=("local", "ray"), default="local")
    extra.add_argument("--address", default=None, help="a Ray cluster's address (default: start a local one)")
    extra.add_argument("--shards", default=None, help="the results folder (default: OUT.shards)")
    known, rest = extra.parse_known_args(list(argv))
    args = build_parser().parse_args(["predict", *rest])
    args.address, args.shards = known.address, known.shards
    if known.engine != "ray":
        from inference.cli import run_predict

        if known.address or known.shards:
            raise MammoReviewError("--address and --shards go with --engine ray")
        return run_predict(args, err)
    return run_ray(args, err)
