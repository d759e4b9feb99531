"""A Grayscale Softcopy Presentation State per image (optional, highdicom): what a PACS viewer draws
over the mammogram without our app, the evidence region as a closed polyline and the probability of
cancer as text, on one graphic layer, with the image's own window. Marked research use only like
the SR and SEG. The series carries the breast's laterality (General Series, type 2C for a paired
body part), so the states of one breast share a series.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid

from inference.pacs.errors import PacsError
from inference.pacs.findings import ImageFinding, StudyFindings

__all__ = ["build_gsps", "GSPS_SERIES_NUMBER", "GSPS_LAYER"]

GSPS_SERIES_NUMBER = 9703
GSPS_LAYER = "MAMMO_REVIEW"
_RESEARCH_USE = "RESEARCH USE ONLY - NOT FOR DIAGNOSIS"


def _window(source: Dataset) -> list[hd.pr.SoftcopyVOILUTTransformation] | None:
    """The source's first window (the viewer's default stays as the modality meant it), if any."""
    center, width = source.get("WindowCenter", None), source.get("WindowWidth", None)
    if center is None or width is None:
        return None
    try:
        c, w = (float(v[0]) if isinstance(v, MultiValue) else float(v) for v in (center, width))
    except (TypeError, ValueError, IndexError):  # an unreadable window: the viewer's default
        return None
    if w <= 0:
        return None
    return [hd.pr.SoftcopyVOILUTTransformation(window_center=c, window_width=w,
                                               referenced_images=hd.ReferencedImageSequence([source]))]  # fmt: skip


def build_gsps(
    image: ImageFinding,
    source: Dataset,
    findings: StudyFindings,
    series_uid: str | None = None,
    instance_number: int = 1,
) -> Dataset:
    """The presentation state of one image: ``source`` holds its header (pixels not needed)."""
    if str(source.get("SOPInstanceUID", "")) != image.sop_uid:
        raise PacsError(f"the header given is not that of image {image.sop_uid}")
    rows, cols = int(source.Rows), int(source.Columns)
    layer = hd.pr.GraphicLayer(layer_name=GSPS_LAYER, order=1, description=f"mammo-review - {_RESEARCH_USE}")
    text = f"P(cancer) {image.p_malignant:.2f} ({findings.algorithm_name}, research use only)"
    texts = [hd.pr.TextObject(
        text_value=text[:64], units=hd.pr.AnnotationUnitsValues.PIXEL,
        bounding_box=(cols * 0.02, rows * 0.01, cols * 0.98, rows * 0.05),
        text_justification=hd.pr.TextJustificationValues.LEFT,
    )]  # fmt: skip
    graphics = []
    box = image.evidence_region()
    if box is not None:
        c0, r0, c1, r1 = (float(v) for v in box)
        c1, r1 = c1 + 1.0, r1 + 1.0  # pixel edges, as in the SR's region
        corners = np.array([[c0, r0], [c1, r0], [c1, r1], [c0, r1], [c0, r0]], dtype=np.float64)
        graphics.append(hd.pr.GraphicObject(graphic_type=hd.pr.GraphicTypeValues.POLYLINE, graphic_data=corners,
                                            units=hd.pr.AnnotationUnitsValues.PIXEL, tracking_id="evidence",
                                            tracking_uid=generate_uid()))  # fmt: skip
    annotation = hd.pr.GraphicAnnotation(referenced_images=[source], graphic_layer=layer,
                                         graphic_objects=graphics or None, text_objects=texts)  # fmt: skip
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[source], series_instance_uid=series_uid or generate_uid(),
        series_number=GSPS_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=instance_number,
        manufacturer="mammo-review", manufacturer_model_name=findings.algorithm_name[:64] or "mammo-review",
        software_versions=findings.algorithm_version or "unknown", device_serial_number="none",
        content_label="MAMMO_REVIEW", content_description=f"evidence and P(cancer) - {_RESEARCH_USE}"[:64],
        graphic_annotations=[annotation], graphic_layers=[layer], voi_lut_transformations=_window(source),
    )  # fmt: skip
    gsps.SeriesDescription = f"mammo-review overlay - {_RESEARCH_USE}"[:64]
    if image.laterality in ("L", "R"):  # the breast is a paired structure: the series says which one
        gsps.Laterality = image.laterality
    return gsps
