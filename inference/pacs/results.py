"""Predictions as DICOM, built with highdicom, every object marked research use only:

- `build_sr`: a Comprehensive SR with a TID 1500 Measurement Report per study: per image the
  probability of cancer, the predicted breast density and view, and the evidence region (a closed
  polyline on the image, TID 1410); per breast and for the exam the probability of cancer and
  the density; the algorithm's name and version; references to every source image.
- `build_seg`: a fractional Segmentation of an image's positive evidence (0..1 of its maximum).

"Research use only, not for diagnosis" is in the series description, the observer device's name
and the algorithm's name; the SR is left unverified and incomplete (`VerificationFlag` UNVERIFIED,
`CompletionFlag` PARTIAL): a reader must never mistake it for a signed report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID, generate_uid

from inference.formats import TASK_CLASSES
from inference.pacs.errors import PacsError
from inference.pacs.findings import ImageFinding, StudyFindings

__all__ = [  # fmt: skip
    "build_sr", "build_seg", "result_objects", "source_headers",
    "RESEARCH_USE", "SR_SERIES_NUMBER", "SEG_SERIES_NUMBER",
]

RESEARCH_USE = "RESEARCH USE ONLY - NOT FOR DIAGNOSIS"
MANUFACTURER = "mammo-review"
SR_SERIES_NUMBER, SEG_SERIES_NUMBER = 9701, 9702
_DEVICE_UID = UID("1.2.826.0.1.3680043.8.498.19990321")  # a fixed UID for "mammo-review" as observer device

_DENSITY = {  # BI-RADS breast composition (CID 6000)
    "A": Code("129716005", "SCT", "Almost entirely fat"),
    "B": Code("129717001", "SCT", "Scattered fibroglandular densities"),
    "C": Code("129718006", "SCT", "Heterogeneously dense"),
    "D": Code("129719003", "SCT", "Extremely dense"),
}
_VIEW = {"CC": codes.SCT.CranioCaudal, "MLO": codes.SCT.MedioLateralObliqueProjection}
_IMAGE_VIEW = Code("111031", "DCM", "Image View")
_LATERALITY = {"R": codes.SCT.Right, "L": codes.SCT.Left}


def _algorithm_name_version(findings: StudyFindings) -> tuple[str, str]:
    return f"{findings.algorithm_name} ({RESEARCH_USE.lower()})"[:64], findings.algorithm_version or "unknown"


def _algorithm(findings: StudyFindings) -> hd.sr.AlgorithmIdentification:
    name, version = _algorithm_name_version(findings)
    return hd.sr.AlgorithmIdentification(name=name, version=version)


def _site(laterality: str) -> list[hd.sr.FindingSite]:
    side = _LATERALITY.get(laterality)
    return [hd.sr.FindingSite(anatomic_location=codes.SCT.Breast, laterality=side)] if side else []


def _top(values: Sequence[float], classes: Sequence[str]) -> str | None:
    clean = [(v, c) for v, c in zip(values, classes, strict=False) if not math.isnan(v)]
    return max(clean)[1] if clean else None


def _measurements(p: float, algorithm: hd.sr.AlgorithmIdentification) -> list[hd.sr.Measurement]:
    if math.isnan(p):
        return []
    return [hd.sr.Measurement(name=codes.DCM.ProbabilityOfCancer, value=round(float(p), 6), unit=codes.UCUM.NoUnits,
                              algorithm_id=algorithm)]  # fmt: skip


def _evaluations(density: Sequence[float], view: Sequence[float] = ()) -> list[hd.sr.QualitativeEvaluation]:
    out = []
    top_density = _top(density, TASK_CLASSES["density"])
    if top_density in _DENSITY:
        out.append(hd.sr.QualitativeEvaluation(codes.SCT.BreastComposition, _DENSITY[top_density]))
    top_view = _top(view, TASK_CLASSES["view"])
    if top_view in _VIEW:
        out.append(hd.sr.QualitativeEvaluation(_IMAGE_VIEW, _VIEW[top_view]))
    return out


def _region(image: ImageFinding, source: Dataset) -> hd.sr.ImageRegion | None:
    box = image.evidence_region()
    if box is None:
        return None
    c0, r0, c1, r1 = (float(v) for v in box)
    c1, r1 = c1 + 1.0, r1 + 1.0  # pixel edges: the box covers the last row and column
    corners = np.array([[c0, r0], [c1, r0], [c1, r1], [c0, r1], [c0, r0]], dtype=np.float64)
    return hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=corners,
                             source_image=hd.sr.SourceImageForRegion.from_source_image(source))  # fmt: skip


_Group = hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations


def build_sr(
    findings: StudyFindings, sources: Mapping[str, Dataset], series_uid: str | None = None, instance_number: int = 1
) -> Dataset:
    """The Comprehensive SR of a study. ``sources``: SOP Instance UID -> the source image's header
    (pixels not needed) for every image in ``findings``."""
    missing = [i.sop_uid for i in findings.images if i.sop_uid not in sources]
    if missing or not findings.images:
        raise PacsError(f"no source image header for {', '.join(missing) or 'any image'} of study {findings.study_uid}")
    algorithm = _algorithm(findings)
    groups: list[_Group] = []
    for i, image in enumerate(findings.images, start=1):
        source = sources[image.sop_uid]
        label = f"{i} {image.laterality or '?'}-{str(source.get('ViewPosition', '') or '?')}"
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"image {label}"),
            algorithm_id=algorithm, finding_sites=_site(image.laterality),
            measurements=_measurements(image.p_malignant, algorithm),
            qualitative_evaluations=_evaluations(image.density, image.view),
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
        ))  # fmt: skip
        region = _region(image, source)
        if region is not None:
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"evidence {label}"),
                referenced_region=region, finding_type=codes.DCM.ImageRegion, algorithm_id=algorithm,
                finding_sites=_site(image.laterality),
            ))  # fmt: skip
    for breast in findings.breasts:
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"breast {breast.laterality}"),
            algorithm_id=algorithm, finding_sites=_site(breast.laterality),
            measurements=_measurements(breast.p_malignant, algorithm),
            qualitative_evaluations=_evaluations(breast.density),
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(sources[u])
                           for u in breast.sop_uids if u in sources],
        ))  # fmt: skip
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="exam"),
        algorithm_id=algorithm, measurements=_measurements(findings.p_malignant, algorithm),
        qualitative_evaluations=_evaluations(findings.density),
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(sources[i.sop_uid])
                       for i in findings.images],
    ))  # fmt: skip
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=_DEVICE_UID, name=f"mammo-review ({RESEARCH_USE.lower()})"[:64], manufacturer_name=MANUFACTURER,
        model_name=f"{findings.algorithm_name} {findings.algorithm_version}".strip()[:64],
    )  # fmt: skip
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.DCM.Device, observer_identifying_attributes=device
            )
        ),
        procedure_reported=codes.SCT.Mammography,
        imaging_measurements=groups,
    )  # fmt: skip
    evidence = [sources[i.sop_uid] for i in findings.images]
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence, content=report, series_instance_uid=series_uid or generate_uid(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=instance_number,
        manufacturer=MANUFACTURER, is_complete=False, is_final=False, is_verified=False,
        series_description=f"mammo-review {findings.algorithm_name} - {RESEARCH_USE}"[:64],
    )  # fmt: skip
    return sr


def build_seg(
    image: ImageFinding,
    source: Dataset,
    findings: StudyFindings,
    series_uid: str | None = None,
    instance_number: int = 1,
) -> Dataset:
    """A fractional SEG of one image's positive evidence (its maximum = 1). ``source`` must hold
    the image's header; its pixels are not read."""
    if image.evidence is None:
        raise PacsError(f"no evidence map for image {image.sop_uid}")
    rows, cols = int(source.Rows), int(source.Columns)
    ev = np.clip(np.nan_to_num(np.asarray(image.evidence, np.float32)), 0.0, None)
    if ev.shape != (rows, cols):
        raise PacsError(f"evidence map of {ev.shape} for an image of {rows} x {cols}")
    top = float(ev.max())
    fraction = ev / top if top > 0 else ev
    name, version = _algorithm_name_version(findings)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="malignancy evidence",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=name, version=version, family=codes.DCM.ArtificialIntelligence
        ),
    )  # fmt: skip
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=fraction[np.newaxis].astype(np.float32),
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL, segment_descriptions=[segment],
        series_instance_uid=series_uid or generate_uid(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=instance_number, manufacturer=MANUFACTURER,
        manufacturer_model_name=f"{findings.algorithm_name}"[:64] or "mammo-review",
        software_versions=findings.algorithm_version or "unknown", device_serial_number="none",
        max_fractional_value=255, series_description=f"mammo-review evidence - {RESEARCH_USE}"[:64],
    )  # fmt: skip
    if "FrameOfReferenceUID" not in seg:  # a projection image: the General Image module then wants it (type 2C)
        seg.PatientOrientation = source.get("PatientOrientation", None) or ""
    return seg


def result_objects(findings: StudyFindings, sources: Mapping[str, Dataset], gsps: bool = False) -> list[Dataset]:
    """The study's SR, then a SEG (one series) per image that has an evidence map, then with
    ``gsps`` a presentation state per image (a series per breast): evidence box and probability."""
    objects = [build_sr(findings, sources)]
    seg_series = generate_uid()
    with_evidence = [i for i in findings.images if i.evidence is not None]
    for n, image in enumerate(with_evidence, start=1):
        objects.append(build_seg(image, sources[image.sop_uid], findings, series_uid=seg_series, instance_number=n))
    if gsps:
        from inference.pacs.presentation import build_gsps

        pr_series: dict[str, str] = {}
        for n, image in enumerate(findings.images, start=1):
            series = pr_series.setdefault(image.laterality, generate_uid())
            objects.append(build_gsps(image, sources[image.sop_uid], findings, series_uid=series, instance_number=n))
    return objects


def source_headers(paths: Sequence[str | Path]) -> dict[str, Dataset]:
    """SOP Instance UID -> header (no pixels) of each DICOM file."""
    from inference.imaging.dicom import read_dicom

    out = {}
    for path in paths:
        try:
            ds = read_dicom(path, stop_before_pixels=True)
        except Exception as exc:  # a file that went away or is not DICOM
            raise PacsError(f"cannot read the source image ({type(exc).__name__}: {exc})", path) from None
        out[str(ds.SOPInstanceUID)] = ds
    return out
