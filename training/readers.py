"""Readers that turn public mammography data sets into label manifests (rows of :class:`LabelRow`).

Each reader documents its label mapping (also in docs/training.md). Every reader gives each image
a ``patient`` group (the woman when known) so :func:`assign_splits` never puts one woman on two
sides. Image paths are absolute; :func:`relative_to` rewrites them relative to a manifest.

- :func:`read_mias` mini-MIAS, :func:`read_cdd_cesm` CDD-CESM (both present under /work/shared/data),
- :func:`read_cbis_ddsm`, :func:`read_vindr`, :func:`read_inbreast` from their documented columns,
- :func:`synthetic_malignancy` the paper's fine-tuning rule (ACR 1-2 benign, 4-5 malignant).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from inference.errors import FormatError
from inference.formats import LabelRow, TaskLabel, image_key

__all__ = [
    "MIAS_DENSITY",
    "MIAS_DENSITY_UNCERTAINTY",
    "SPLITS",
    "read_mias",
    "read_cdd_cesm",
    "read_ddsm_mini",
    "read_cbis_ddsm",
    "read_vindr",
    "read_inbreast",
    "synthetic_malignancy",
    "with_synthetic_malignancy",
    "SUGGESTED_WEIGHT",
    "weigh_by_who",
    "assign_splits",
    "splits_from",
    "relative_to",
    "READERS",
    "add_arguments",
    "run",
]

#: MIAS background tissue -> the nearest BI-RADS density, given with uncertainty 0.5 (not BI-RADS).
MIAS_DENSITY: dict[str, str] = {"F": "A", "G": "B", "D": "C"}
MIAS_DENSITY_UNCERTAINTY = 0.5
SPLITS: tuple[str, ...] = ("train", "tuning", "validation")
_MISSING = TaskLabel(None, 0.0)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [{(k or "").strip(): (v or "").strip() for k, v in rec.items()} for rec in csv.DictReader(f)]
    except OSError as exc:
        raise FormatError(f"cannot read ({exc.strerror or exc})", path) from exc


def _need(rec: dict[str, str], columns: Iterable[str], path: Path) -> None:
    missing = [c for c in columns if c not in rec]
    if missing:
        raise FormatError(f"missing column(s) {', '.join(missing)}", path)


def _label(value: str | None, u: float = 0.0) -> TaskLabel:
    return _MISSING if not value else TaskLabel(value, u)


def _key(path: Path, keys: Callable[[Path], str] | None) -> str:
    return (keys or image_key)(path)


# --------------------------------------------------------------------------- mini-MIAS
def read_mias(root: str | Path, keys: Callable[[Path], str] | None = None) -> list[LabelRow]:
    """mini-MIAS (``labels.csv`` + ``images/``).

    - malignancy: ``malignant`` (1 -> malignant; benign findings and normal -> benign), u = 0.
    - density: MIAS tissue is a 3-class scale, not BI-RADS: F (fatty) -> A, G (fatty-glandular)
      -> B, D (dense-glandular) -> C, each with uncertainty 0.5 (so weight 0.5).
    - acr: missing (MIAS has no assessment category). view: MLO for all, u = 0.
    - patient: ``mias-NNN`` for the pair (odd number right breast, next even number left).
    """
    root = Path(root)
    src = root / "labels.csv"
    rows = []
    for rec in _csv_rows(src):
        _need(rec, ("image", "laterality", "tissue", "malignant"), src)
        path = (root / "images" / rec["image"]).resolve()
        number = int(re.sub(r"\D", "", rec["image"]))
        tissue = rec["tissue"].upper()
        if tissue not in MIAS_DENSITY:
            raise FormatError(f"{rec['image']}: tissue {tissue!r} is not F, G or D", src)
        labels = {
            "malignancy": TaskLabel("malignant" if rec["malignant"] == "1" else "benign", 0.0),
            "acr": _MISSING,
            "density": TaskLabel(MIAS_DENSITY[tissue], MIAS_DENSITY_UNCERTAINTY),
            "view": TaskLabel("MLO", 0.0),
        }
        rows.append(
            LabelRow(
                key=_key(path, keys),
                image=str(path),
                labels=labels,
                laterality=rec["laterality"].upper(),
                patient=f"mias-{(number + 1) // 2:03d}",
                source="mias",
            )
        )
    return rows


# --------------------------------------------------------------------------- CDD-CESM
def read_cdd_cesm(root: str | Path, keys: Callable[[Path], str] | None = None) -> list[LabelRow]:
    """CDD-CESM low-energy images (``labels.csv`` + ``cc/`` + ``le/``).

    - malignancy: from ``cc/`` images only (``malignant``: malignant or mixed -> malignant, normal
      and benign -> benign). ``le/`` images are ALL malignant by construction (a segmentation
      subset): their malignancy is left missing so the centre's look cannot teach cancer.
    - acr: BI-RADS 1-6 from ``birads`` for ``cc/`` images where known, u = 0. Missing for ``le/``
      (mostly 4-5 because every one is a cancer: the same skew as above).
    - density: ``density`` where known (A-D), u = 0. view: ``view`` (CC/MLO), u = 0.
    - patient: ``cdd-P<id>`` when known; a ``cc/`` image without one is its own group
      ``cdd-cc-<name>`` (see docs/training.md on near-duplicates).
    """
    root = Path(root)
    src = root / "labels.csv"
    rows = []
    seen: set[str] = set()
    for rec in _csv_rows(src):
        _need(rec, ("image", "patient", "laterality", "view", "malignant", "density", "birads"), src)
        if rec["image"] in seen:
            continue
        seen.add(rec["image"])
        path = (root / rec["image"]).resolve()
        is_cc_subset = rec["image"].startswith("cc/")
        birads = rec["birads"]
        acr = birads if is_cc_subset and birads in {"1", "2", "3", "4", "5", "6"} else None
        labels = {
            "malignancy": (
                TaskLabel("malignant" if rec["malignant"] == "1" else "benign", 0.0) if is_cc_subset else _MISSING
            ),
            "acr": _label(acr),
            "density": _label(rec["density"].upper() or None),
            "view": _label(rec["view"].upper() or None),
        }
        patient = f"cdd-P{rec['patient']}" if rec["patient"] else f"cdd-cc-{Path(rec['image']).stem}"
        rows.append(
            LabelRow(
                key=_key(path, keys),
                image=str(path),
                labels=labels,
                laterality=rec["laterality"].upper(),
                patient=patient,
                source="cdd-cesm/cc" if is_cc_subset else "cdd-cesm/le",
            )
        )
    return rows


# --------------------------------------------------------------------------- mini-DDSM
def read_ddsm_mini(root: str | Path, keys: Callable[[Path], str] | None = None) -> list[LabelRow]:
    """mini-DDSM (``labels.csv`` + ``images/``): ten benign four-view film cases.

    - malignancy: ``malignant`` (0 for all: benign on the breast with the lesion, and its normal
      other breast), u = 0. acr: ``birads`` (the DDSM assessment; 1 for a breast without a
      finding), u = 0. density: ``density`` (A-D), u = 0. view: ``view``, u = 0.
    - patient: ``ddsm-<case>``. The lesion outlines (``mask``) are read by
      :func:`training.lesions.ddsm_mini_lesions`.
    """
    root = Path(root)
    src = root / "labels.csv"
    rows = []
    for rec in _csv_rows(src):
        _need(rec, ("image", "case", "laterality", "view", "density", "birads", "malignant"), src)
        path = (root / rec["image"]).resolve()
        birads = rec["birads"]
        rows.append(
            LabelRow(
                key=_key(path, keys),
                image=str(path),
                labels={
                    "malignancy": TaskLabel("malignant" if rec["malignant"] == "1" else "benign", 0.0),
                    "acr": _label(birads if birads in {"1", "2", "3", "4", "5", "6"} else None),
                    "density": _label(rec["density"].upper() or None),
                    "view": _label(rec["view"].upper() or None),
                },
                laterality=rec["laterality"].upper(),
                patient=f"ddsm-{rec['case']}",
                source="ddsm-mini",
            )
        )
    return rows


# --------------------------------------------------------------------------- CBIS-DDSM
def read_cbis_ddsm(
    csv_paths: Sequence[str | Path], image_root: str | Path, keys: Callable[[Path], str] | None = None
) -> list[LabelRow]:
    """CBIS-DDSM case description CSVs (mass/calc, train/test), one row per abnormality.

    Columns used: ``patient_id``, ``left or right breast``, ``image view``, ``breast density``
    (or ``breast_density``: 1-4 -> A-D), ``assessment`` (BI-RADS 0-5 -> ACR; 0 -> missing),
    ``pathology`` (MALIGNANT -> malignant; BENIGN and BENIGN_WITHOUT_CALLBACK -> benign),
    ``image file path`` (relative to ``image_root``). Several abnormalities of one image merge:
    malignant if any is, the highest assessment. u = 0 throughout.
    """
    image_root = Path(image_root)
    merged: dict[str, dict[str, str]] = {}
    for p in csv_paths:
        p = Path(p)
        for rec in _csv_rows(p):
            density_col = "breast density" if "breast density" in rec else "breast_density"
            _need(
                rec,
                (
                    "patient_id",
                    "left or right breast",
                    "image view",
                    density_col,
                    "assessment",
                    "pathology",
                    "image file path",
                ),
                p,
            )
            rel = rec["image file path"].strip().strip('"')
            m = merged.setdefault(rel, {"mal": "0", "assessment": "", **rec, "density": rec[density_col]})
            if rec["pathology"].upper() == "MALIGNANT":
                m["mal"] = "1"
            a = rec["assessment"]
            if a.isdigit() and (not m["assessment"] or int(a) > int(m["assessment"])):
                m["assessment"] = a
    rows = []
    density = {"1": "A", "2": "B", "3": "C", "4": "D"}
    for rel, m in merged.items():
        path = (image_root / rel).resolve()
        view = m["image view"].upper()
        rows.append(
            LabelRow(
                key=_key(path, keys),
                image=str(path),
                labels={
                    "malignancy": TaskLabel("malignant" if m["mal"] == "1" else "benign", 0.0),
                    "acr": _label(m["assessment"] if m["assessment"] in {"1", "2", "3", "4", "5"} else None),
                    "density": _label(density.get(m["density"])),
                    "view": _label("CC" if view == "CC" else "MLO" if view == "MLO" else None),
                },
                laterality={"LEFT": "L", "RIGHT": "R"}.get(m["left or right breast"].upper(), ""),
                patient=f"cbis-{m['patient_id']}",
                source="cbis-ddsm",
            )
        )
    return rows


# --------------------------------------------------------------------------- VinDr-Mammo
def read_vindr(
    breast_csv: str | Path,
    image_root: str | Path,
    finding_csv: str | Path | None = None,
    keys: Callable[[Path], str] | None = None,
) -> list[LabelRow]:
    """VinDr-Mammo ``breast-level_annotations.csv`` (+ optional ``finding_annotations.csv``).

    Columns used: ``study_id``, ``image_id``, ``laterality``, ``view_position``,
    ``breast_birads`` ("BI-RADS 1".."BI-RADS 5" -> ACR 1-5), ``breast_density`` ("DENSITY A".."D"),
    ``split`` (kept as given: training -> train, test -> validation). VinDr has no biopsy result:
    malignancy is missing (use :func:`with_synthetic_malignancy` for the paper's rule); with the
    finding CSV, ``finding_categories`` are read but only to keep the row's ACR. Images are
    ``image_root/<study_id>/<image_id>.dicom``. patient = study (VinDr gives one study per woman).
    """
    breast_csv = Path(breast_csv)
    image_root = Path(image_root)
    if finding_csv is not None:
        for rec in _csv_rows(Path(finding_csv)):
            _need(rec, ("image_id", "finding_categories"), Path(finding_csv))
    rows = []
    for rec in _csv_rows(breast_csv):
        _need(
            rec, ("study_id", "image_id", "laterality", "view_position", "breast_birads", "breast_density"), breast_csv
        )
        path = (image_root / rec["study_id"] / f"{rec['image_id']}.dicom").resolve()
        birads = re.sub(r"\D", "", rec["breast_birads"])
        density = rec["breast_density"].upper().replace("DENSITY", "").strip()
        view = rec["view_position"].upper()
        split = {"training": "train", "test": "validation"}.get(rec.get("split", "").lower(), "")
        rows.append(
            LabelRow(
                key=_key(path, keys) if path.exists() else rec["image_id"],
                image=str(path),
                labels={
                    "malignancy": _MISSING,
                    "acr": _label(birads if birads in {"1", "2", "3", "4", "5"} else None),
                    "density": _label(density if density in {"A", "B", "C", "D"} else None),
                    "view": _label("CC" if view == "CC" else "MLO" if view == "MLO" else None),
                },
                laterality=rec["laterality"].upper()[:1],
                patient=f"vindr-{rec['study_id']}",
                study=rec["study_id"],
                source="vindr-mammo",
                split=split,
            )
        )
    return rows


# --------------------------------------------------------------------------- INbreast
def read_inbreast(
    table: str | Path, image_root: str | Path, keys: Callable[[Path], str] | None = None
) -> list[LabelRow]:
    """INbreast ``INbreast.csv`` (the xls saved as CSV, ``;`` or ``,`` separated).

    Columns used: ``Patient ID``, ``Laterality``, ``View``, ``File Name`` (the DICOM is
    ``image_root/<File Name>_*.dcm``), ``ACR`` (density 1-4 -> A-D), ``Bi-Rads`` (1-6, "4a/4b/4c"
    -> 4 -> ACR). INbreast gives no biopsy per image: malignancy is missing (derive it with
    :func:`with_synthetic_malignancy`). u = 0. Patient IDs are anonymised per woman.
    """
    table = Path(table)
    image_root = Path(image_root)
    text = table.read_text(encoding="utf-8-sig")
    delimiter = ";" if text.count(";") > text.count(",") else ","
    rows = []
    for rec in csv.DictReader(text.splitlines(), delimiter=delimiter):
        rec = {(k or "").strip(): (v or "").strip() for k, v in rec.items()}
        _need(rec, ("Patient ID", "Laterality", "View", "File Name", "ACR", "Bi-Rads"), table)
        if not rec["File Name"]:
            continue
        found = sorted(image_root.glob(f"{rec['File Name']}*.dcm"))
        path = (found[0] if found else image_root / f"{rec['File Name']}.dcm").resolve()
        birads = re.sub(r"[^0-9]", "", rec["Bi-Rads"])[:1]
        view = rec["View"].upper()
        rows.append(
            LabelRow(
                key=_key(path, keys) if path.exists() else f"inbreast-{rec['File Name']}",
                image=str(path),
                labels={
                    "malignancy": _MISSING,
                    "acr": _label(birads if birads in {"1", "2", "3", "4", "5", "6"} else None),
                    "density": _label({"1": "A", "2": "B", "3": "C", "4": "D"}.get(rec["ACR"])),
                    "view": _label("CC" if view == "CC" else "MLO" if view == "MLO" else None),
                },
                laterality=rec["Laterality"].upper()[:1],
                patient=f"inbreast-{rec['Patient ID']}",
                source="inbreast",
            )
        )
    return rows


# --------------------------------------------------------------------------- synthetic labels
def synthetic_malignancy(acr: str | None, uncertainty: float = 0.3) -> TaskLabel:
    """The paper's rule for fine-tuning: ACR 1-2 -> benign, 4-5 -> malignant, anything else
    (3, 6 = already proven, missing) -> missing; given a constant uncertainty."""
    if not 0.0 <= uncertainty <= 1.0:
        raise ValueError(f"uncertainty {uncertainty} is outside [0, 1]")
    if acr in ("1", "2"):
        return TaskLabel("benign", uncertainty)
    if acr in ("4", "5"):
        return TaskLabel("malignant", uncertainty)
    return _MISSING


def with_synthetic_malignancy(rows: Iterable[LabelRow], uncertainty: float = 0.3) -> list[LabelRow]:
    """Rows whose missing malignancy label is filled by :func:`synthetic_malignancy` of their ACR."""
    out = []
    for r in rows:
        if r.label("malignancy").value is None:
            labels = dict(r.labels)
            labels["malignancy"] = synthetic_malignancy(r.label("acr").value, uncertainty)
            r = dataclasses.replace(r, labels=labels)
        out.append(r)
    return out


# --------------------------------------------------------------------------- splits
#: Loss-weight factor of a label whose ``<task>_by`` says ``suggested``: nobody confirmed it (in the
#: app's export, an imported data set's label standing in where no person labelled the task). It
#: counts, at half the weight of a person's label of the same uncertainty.
SUGGESTED_WEIGHT = 0.5
_BY_KEPT = ("", "person")


def weigh_by_who(rows: Iterable[LabelRow], warn: Callable[[str], None] | None = None) -> list[LabelRow]:
    """Rows whose labels are weighted by who made them (the manifest's ``<task>_by``).

    ``person`` or empty: as written; ``suggested``: loss weight times :data:`SUGGESTED_WEIGHT`
    (uncertainty ``u`` becomes ``1 - (1 - u) * SUGGESTED_WEIGHT``); anything else (e.g. ``model``:
    a model's output is never a label) is dropped, with one ``warn`` line per kind and task."""
    out: list[LabelRow] = []
    dropped: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        labels: dict[str, TaskLabel] = {}
        for task, lab in row.labels.items():
            if lab.value is None or lab.by in _BY_KEPT:
                labels[task] = lab
            elif lab.by == "suggested":
                u = 1.0 - (1.0 - lab.uncertainty) * SUGGESTED_WEIGHT
                labels[task] = dataclasses.replace(lab, uncertainty=u)
            else:
                dropped[(lab.by, task)] += 1
        out.append(dataclasses.replace(row, labels=labels) if labels != row.labels else row)
    for (by, task), n in sorted(dropped.items()):
        if warn is not None:
            warn(f"ignored {n} {task} label(s) marked {task}_by={by!r}: only people's labels and suggestions train")
    return out


def _hash(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def assign_splits(
    rows: Sequence[LabelRow],
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    group_of: Callable[[LabelRow], str] | None = None,
    keep_existing: bool = False,
) -> list[LabelRow]:
    """Split by woman into train / tuning / validation, stratified by source and malignancy.

    Groups are ``row.patient`` (or ``group_of(row)``); a group never straddles two splits. Groups
    fall into strata (first source of the group, any malignant, any malignancy label); within each
    stratum they are ordered by a seeded hash and cut by ``fractions``, so the split is
    deterministic and stable when rows are added elsewhere. ``keep_existing`` keeps a split that a
    reader set (VinDr's official one).
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions {fractions} must be non-negative and sum to 1")
    group_of = group_of or (lambda r: r.patient or r.key)
    members: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        members[group_of(r)].append(i)
    strata: dict[tuple[str, bool, bool], list[str]] = defaultdict(list)
    for g, idx in members.items():
        labels = [rows[i].label("malignancy").value for i in idx]
        strata[(rows[idx[0]].source, "malignant" in labels, any(v is not None for v in labels))].append(g)
    split_of: dict[str, str] = {}
    for stratum in sorted(strata):
        groups = sorted(strata[stratum], key=lambda g: _hash(seed, g))
        n = len(groups)
        cut1 = round(n * fractions[0])
        cut2 = cut1 + round(n * fractions[1])
        for j, g in enumerate(groups):
            split_of[g] = SPLITS[0] if j < cut1 else SPLITS[1] if j < cut2 else SPLITS[2]
    out = []
    for r in rows:
        split = r.split if keep_existing and r.split in SPLITS else split_of[group_of(r)]
        out.append(dataclasses.replace(r, split=split))
    return out


def splits_from(rows: Sequence[LabelRow], other: Sequence[LabelRow], new: str = "") -> list[LabelRow]:
    """Rows with the split their woman (``patient``) has in ``other`` (another manifest's rows), so
    two runs share one split. Women absent from ``other`` get split ``new`` when given; otherwise
    they keep the split they have."""
    if new and new not in SPLITS:
        raise ValueError(f"split {new!r} is not one of {', '.join(SPLITS)}")
    split_of: dict[str, str] = {}
    for r in other:
        group = r.patient or r.key
        if split_of.setdefault(group, r.split) != r.split:
            raise ValueError(f"woman {group!r} is in two splits of the other manifest")
    out = []
    for r in rows:
        split = split_of.get(r.patient or r.key, new or r.split)
        out.append(dataclasses.replace(r, split=split))
    return out


def relative_to(rows: Iterable[LabelRow], folder: str | Path) -> list[LabelRow]:
    """Rows whose image paths are written relative to ``folder`` (where the manifest lives)."""
    folder = Path(folder).resolve()
    return [dataclasses.replace(r, image=os.path.relpath(r.image, folder)) for r in rows]


def _cbis(src: Path) -> list[LabelRow]:
    csvs = sorted(src.glob("*case_description*.csv"))
    if not csvs:
        raise FormatError("no *case_description*.csv file here", src)
    return read_cbis_ddsm(csvs, src)


def _vindr(src: Path) -> list[LabelRow]:
    finding = src / "finding_annotations.csv"
    return read_vindr(src / "breast-level_annotations.csv", src / "images", finding if finding.exists() else None)


def _inbreast(src: Path) -> list[LabelRow]:
    table = next((p for p in (src / "INbreast.csv", src / "INbreast.CSV") if p.exists()), src / "INbreast.csv")
    return read_inbreast(table, src / "AllDICOMs")


#: name -> reader taking the data set's folder (see each reader for the files it expects there).
READERS: dict[str, Callable[[Path], list[LabelRow]]] = {
    "mias": lambda src: read_mias(src),
    "cdd-cesm": lambda src: read_cdd_cesm(src),
    "ddsm-mini": lambda src: read_ddsm_mini(src),
    "cbis-ddsm": _cbis,
    "vindr": _vindr,
    "inbreast": _inbreast,
}


# --------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m training manifest NAME SRC [NAME SRC ...] --out M.csv``."""
    parser.add_argument(
        "sources", nargs="+", metavar="NAME SRC", help=f"pairs of data set name ({', '.join(READERS)}) and folder"
    )
    parser.add_argument("--out", required=True, type=Path, help="manifest CSV to write (JSON copy beside it)")
    parser.add_argument("--fractions", default="0.6,0.2,0.2", help="train,tuning,validation fractions (by woman)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split hash")
    parser.add_argument("--relative", action="store_true", help="write image paths relative to the manifest's folder")
    parser.add_argument("--synthetic-malignancy", type=float, default=None, metavar="U",
                        help="fill missing malignancy from ACR (1-2 benign, 4-5 malignant) with uncertainty U")
    parser.add_argument("--splits-from", type=Path, default=None, metavar="M.csv",
                        help="give each woman the split she has in this other manifest")
    parser.add_argument("--new-women", choices=SPLITS, default=None,
                        help="with --splits-from: the split of women that manifest lacks (default: split as usual)")


def run(args: argparse.Namespace) -> int:
    from inference.formats import read_label_manifest, write_label_manifest  # noqa: PLC0415
    from training.lesions import LESION_READERS, LesionRecord, lesions_path_for, write_lesions  # noqa: PLC0415

    if len(args.sources) % 2:
        raise ValueError("give data sets as NAME SRC pairs")
    fractions = tuple(float(f) for f in args.fractions.split(","))
    if len(fractions) != 3:
        raise ValueError(f"--fractions {args.fractions!r}: expected three numbers")
    rows: list[LabelRow] = []
    lesions: list[LesionRecord] = []
    for name, src in zip(args.sources[::2], args.sources[1::2], strict=True):
        if name not in READERS:
            raise ValueError(f"unknown data set {name!r}; known: {', '.join(READERS)}")
        got = READERS[name](Path(src))
        print(f"{name}: {len(got)} images from {src}")
        rows += got
        if name in LESION_READERS:
            found = LESION_READERS[name](Path(src), got)
            kinds = {k: sum(r.kind == k for r in found) for k in ("outline", "circles", "none")}
            print(f"{name}: lesion maps for {len(found)} images ({', '.join(f'{k} {v}' for k, v in kinds.items())})")
            lesions += found
    if args.synthetic_malignancy is not None:
        rows = with_synthetic_malignancy(rows, args.synthetic_malignancy)
    rows = assign_splits(rows, fractions, seed=args.seed, keep_existing=True)
    if args.splits_from is not None:
        rows = splits_from(rows, read_label_manifest(args.splits_from), args.new_women or "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.relative:
        rows = relative_to(rows, args.out.parent)
    write_label_manifest(args.out, rows)
    if lesions:
        print(f"wrote {write_lesions(lesions_path_for(args.out), lesions)}: {len(lesions)} lesion records")
    counts = {s: sum(r.split == s for r in rows) for s in SPLITS}
    print(f"wrote {args.out}: {len(rows)} rows ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return 0
