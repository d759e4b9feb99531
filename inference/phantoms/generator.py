"""Synthetic mammograms (phantoms) for tests, benchmarks and the bundled sample studies: one place to
import them from, and the command that writes sample studies.

The drawing (`PhantomSpec`, `render`, `ground_truth`, `write_png` ...) lives in
`inference.phantoms.drawing`; the DICOM writers (`write_dicom`: bit depths, MONOCHROME1/2, VOI LUTs,
transfer syntaxes, where laterality and view are written; `write_study`: a 4-view screening study)
in `inference.phantoms.dicom`, which builds on the drawing. Both are re-exported here.

Synthetic images only: they are not anatomy and carry no clinical meaning.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from inference.phantoms.dicom import (
    MG_FOR_PRESENTATION,
    TRANSFER_SYNTAXES,
    TagsMode,
    VoiMode,
    write_dicom,
    write_non_image_dicom,
    write_study,
)
from inference.phantoms.drawing import (
    DENSITIES,
    CalcCluster,
    Density,
    Laterality,
    LesionTruth,
    Mass,
    PhantomSpec,
    PhantomTruth,
    View,
    ground_truth,
    render,
    render_with_truth,
    write_jpeg,
    write_png,
)

__all__ = [  # fmt: skip
    "Mass", "CalcCluster", "PhantomSpec", "LesionTruth", "PhantomTruth", "TRANSFER_SYNTAXES",
    "MG_FOR_PRESENTATION", "render", "ground_truth", "render_with_truth", "write_dicom",
    "write_non_image_dicom", "write_study", "write_png", "write_jpeg", "main",
    "Laterality", "View", "Density", "DENSITIES", "TagsMode", "VoiMode",
]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m inference.phantoms.generator OUTDIR --studies N --rows R --cols C [--seed S]`."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.phantoms.generator",
        description="Write synthetic 4-view mammography studies (phantoms) as DICOM.",
    )
    parser.add_argument("outdir", type=Path)
    for name, default in (("--studies", 1), ("--rows", 1024), ("--cols", 768), ("--seed", 0)):
        parser.add_argument(name, type=int, default=default)
    parser.add_argument("--density", choices=DENSITIES, default=None,
                        help="BI-RADS density of every study (default: varies)")  # fmt: skip
    parser.add_argument("--transfer-syntax", choices=list(TRANSFER_SYNTAXES), default="explicit")
    parser.add_argument("--bits", type=int, default=12)
    parser.add_argument("--monochrome1", action="store_true")
    parser.add_argument("--tags", choices=["standard", "text_only", "none"], default="standard")
    parser.add_argument("--malignant", choices=["cycle", "R", "L", "none"], default="cycle",
                        help="breast with a cancer (default: R, none, L in turn)")  # fmt: skip
    parser.add_argument("--patient-id", default=None, help="PatientID (and folder) of study 1")
    args = parser.parse_args(argv)
    densities: tuple[Density, ...] = ("B", "C", "A", "D")
    sides: tuple[Laterality | None, ...] = ("R", None, "L")
    for n in range(args.studies):
        patient = f"PHANTOM{args.seed:03d}{n:03d}"
        if args.patient_id:
            patient = args.patient_id if n == 0 else f"{args.patient_id}-{n}"
        side: Laterality | None = sides[n % 3] if args.malignant == "cycle" else args.malignant
        if args.malignant == "none":
            side = None
        density: Density = args.density or densities[n % 4]
        paths = write_study(
            args.outdir / patient, patient_id=patient, patient_name=f"Phantom^{n:03d}",
            shape=(args.rows, args.cols), density=density,
            malignant_side=side, seed=args.seed * 1000 + n,
            transfer_syntax=args.transfer_syntax, bits_stored=args.bits,
            photometric="MONOCHROME1" if args.monochrome1 else "MONOCHROME2",
            tags_mode=args.tags,
        )  # fmt: skip
        print(f"{patient}: {len(paths)} images in {paths[0].parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
