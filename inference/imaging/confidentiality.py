"""De-identification per DICOM PS3.15 Annex E: the Basic Application Level Confidentiality Profile.

The action of every attribute of Table E.1-1 comes from dicom-anonymizer's copy of the table
(``dicomanonymizer.dicom_anonymization_databases.dicomfields_2026c``, BSD-3-Clause, a maintained
transcription of the current standard): the project keeps no list of its own. Its appliers are not
used (they draw random UIDs, know no options and do not fill the de-identification attributes);
this module applies the actions, recursively inside every sequence:

=========  ===============================================================================
``D``      replaced by a dummy value of the attribute's VR ("ANONYMIZED", 19000101, 0, ...)
``Z``      emptied (PatientID, Z/D, and PatientName, Z, get a keyed pseudonym instead, which the
           profile allows: "a non-zero length value that may be a dummy value")
``X``      removed
``K``      kept (an option says so)
``C``      cleaned: dates shifted by the option below; a C the module cannot clean (free text,
           binary timestamps) gets the basic profile's action, which is stricter
``U``      the UID replaced by ``2.25.<integer>`` from a keyed hash: the same UID always maps to
           the same new one (within one key), so studies and series stay grouped
compound   the last choice that keeps the data set conformant without carrying information:
           ``Z/D``, ``X/D``, ``X/Z/D`` -> D; ``X/Z`` -> Z; ``X/Z/U*`` -> a sequence kept with its
           items de-identified (its UIDs replaced through their own ``U``), other VRs Z or U
=========  ===============================================================================

A sequence whose action is D keeps its items, each de-identified; one with Z is emptied. Private
attributes (odd groups), overlays (60xx) and curves (50xx) are removed, at every level.

Options (:class:`ProfileOptions`), PS3.15 Table E.1-1's columns:

- *Retain Longitudinal Temporal Information with Modified Dates* (code 113107): every DA, DT and TM
  attribute of the table is kept but its dates are shifted back by a whole number of days, the same
  for every file of one patient (a keyed hash of the original PatientID), so intervals survive; the
  birth date and time and the GPS time stamp keep the basic action, as the table says.
- *Retain Patient Characteristics* (code 113108): age, sex, size, weight, ethnic group, smoking and
  pregnancy status kept; the free-text ones (allergies, pre-medication, special needs, patient
  state), which the option would have cleaned, are removed.

- *Clean Descriptors* (code 113105), when given a cleaning function: the descriptors that tell
  laterality and view (study and series description, protocol name, acquisition device processing
  description) keep the cleaned text; text the function refuses gets the basic action.

The options' attribute sets are the only lists kept here (a few tags each); the tests check them
and every action against the standard's own table. ``keep_deidentified_uids`` keeps the UIDs of a
data set already marked PatientIdentityRemoved=YES (the label export's rule: a re-export keeps keys).

:meth:`Deidentifier.deidentify` also sets PatientIdentityRemoved = YES, DeidentificationMethod and
DeidentificationMethodCodeSequence (113100 and the options' codes, scheme DCM), and
LongitudinalTemporalInformationModified. BurnedInAnnotation becomes NO only when the caller says the
pixels outside the breast were blanked (:func:`blank_outside_breast`); otherwise it is left as it
was and :class:`DeidentificationReport` says that burned-in text may remain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from scipy import ndimage

from inference.errors import PreprocessError
from inference.imaging.geometry import breast_mask
from inference.imaging.pilview import float_image

__all__ = [
    "ProfileOptions",
    "Deidentifier",
    "DeidentificationReport",
    "BlankResult",
    "blank_outside_breast",
    "DatasetBlanking",
    "blank_dataset",
    "basic_profile_actions",
    "PATIENT_CHARACTERISTICS",
    "DATES_NOT_RETAINED",
    "MAMMOGRAPHY_DESCRIPTORS",
    "PROFILE_CODES",
]

#: PS3.16 CID 7050 codes (scheme DCM) of the profile and its options.
PROFILE_CODES: dict[str, tuple[str, str]] = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "modified_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
}

#: Retain Patient Characteristics: the attributes Table E.1-1 marks K (the C ones are removed here).
PATIENT_CHARACTERISTICS: frozenset[int] = frozenset({
    0x00101010,  # Patient's Age
    0x00100040,  # Patient's Sex
    0x00102203,  # Patient's Sex Neutered
    0x00101020,  # Patient's Size
    0x00101030,  # Patient's Weight
    0x00102160,  # Ethnic Group
    0x001021A0,  # Smoking Status
    0x001021C0,  # Pregnancy Status
    0x0072005F,  # Selector AS Value
})
#: Descriptors that tell laterality and view ("R CC"): the default ones for the Clean Descriptors option.
MAMMOGRAPHY_DESCRIPTORS: frozenset[int] = frozenset({
    0x00081030,  # Study Description
    0x0008103E,  # Series Description
    0x00181030,  # Protocol Name
    0x00181400,  # Acquisition Device Processing Description
})
#: DA/DT/TM attributes of the table that the Modified Dates option does not retain.
DATES_NOT_RETAINED: frozenset[int] = frozenset({
    0x00100030,  # Patient's Birth Date
    0x00100032,  # Patient's Birth Time
    0x00160077,  # GPS Time Stamp
})
_DATE_VRS = ("DA", "DT", "TM")
_PSEUDONYMS = (0x00100020, 0x00100010)  # PatientID, PatientName: Z, filled with a keyed pseudonym
_META_REMOVED = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)  # AE titles, private info
_DUMMY_DATE = "19000101"

_CATEGORIES = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}
_TABLE: dict[int, str] | None = None


def basic_profile_actions() -> dict[int, str]:
    """Tag -> the Basic Profile's action code (``"D"``, ``"X/Z"``, ...) for every concrete tag of Table
    E.1-1, from dicom-anonymizer's transcription; the 50xx/60xx/private patterns are handled apart."""
    global _TABLE
    if _TABLE is None:
        from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as table

        actions: dict[int, str] = {}
        for name, code in _CATEGORIES.items():
            for entry in getattr(table, name):
                if len(entry) == 2:  # (group, element); masked patterns (curves, overlays) are 4-tuples
                    actions[entry[0] << 16 | entry[1]] = code
        _TABLE = actions
    return _TABLE


@dataclass(frozen=True)
class ProfileOptions:
    """The profile's options this module implements (all off: the Basic Profile alone).

    ``clean_descriptors``: the Clean Descriptors option, as a function that returns a descriptor's
    text cleaned (known to hold nothing identifying) or None (then the basic action applies); it
    must be picklable to travel to worker processes. It applies to ``descriptor_tags``, which must be
    attributes the table marks C for that option (the tests check the default set).
    """

    retain_modified_dates: bool = False
    retain_patient_characteristics: bool = False
    clean_descriptors: Callable[[str], str | None] | None = None
    descriptor_tags: frozenset[int] = field(default_factory=lambda: MAMMOGRAPHY_DESCRIPTORS)


@dataclass(frozen=True)
class _Pass:
    """One data set's de-identification: its report, the date shift, the patient, whether UIDs stay."""

    report: DeidentificationReport
    shift: int | None
    patient: str
    keep_uids: bool


@dataclass
class DeidentificationReport:
    """What one data set's de-identification did."""

    removed: int = 0
    replaced: int = 0
    emptied: int = 0
    uids: int = 0
    dates_shifted: int = 0
    kept: int = 0
    private_removed: int = 0
    date_shift_days: int | None = None
    burned_in_annotation: str = ""  # the value written: "NO" after blanking, else the original ("" absent)
    notes: list[str] = field(default_factory=list)

    @property
    def burned_in_text_may_remain(self) -> bool:
        return self.burned_in_annotation != "NO"


class Deidentifier:
    """Applies the profile with one secret ``key`` (bytes): UIDs, pseudonyms and date shifts made with
    the same key agree across files and runs; keep the key private, it links the exports back."""

    def __init__(self, key: bytes, options: ProfileOptions = ProfileOptions(), max_shift_days: int = 3650,
                 keep_deidentified_uids: bool = False) -> None:
        """``keep_deidentified_uids``: a data set already marked PatientIdentityRemoved=YES keeps its UIDs
        (a label export re-exported elsewhere comes back under the same keys; labels.exchange's rule)."""
        if len(key) < 16:
            raise ValueError("the de-identification key must be at least 16 bytes")
        self.keep_deidentified_uids = keep_deidentified_uids
        self._key = key
        self.options = options
        self.max_shift_days = max_shift_days
        self._actions = basic_profile_actions()

    # ------------------------------------------------------------------ keyed values
    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """The replacement of ``original``: ``2.25.`` and a 128-bit integer from the keyed hash."""
        return "2.25." + str(int.from_bytes(self._digest("uid", original.strip())[:16], "big"))

    def pseudonym(self, patient_id: str) -> str:
        """A patient's pseudonym (16 characters): the same patient, the same pseudonym."""
        return "ANON" + self._digest("patient", patient_id.strip()).hex()[:12].upper()

    def date_shift_days(self, patient_id: str) -> int:
        """Days every date of this patient moves back under the Modified Dates option (1 .. max_shift_days)."""
        return 1 + int.from_bytes(self._digest("dates", patient_id.strip())[:8], "big") % self.max_shift_days

    # ------------------------------------------------------------------ the profile
    def action(self, tag: int, vr: str) -> str | None:
        """The action applied to ``tag`` with the options resolved (None: not in the table, kept;
        ``"CLEAN"``: a descriptor given to the Clean Descriptors function first)."""
        basic = self._actions.get(tag)
        if basic is None:
            return None
        if self.options.clean_descriptors is not None and tag in self.options.descriptor_tags:
            return "CLEAN"
        if self.options.retain_patient_characteristics and tag in PATIENT_CHARACTERISTICS:
            return "K"
        if (self.options.retain_modified_dates and vr in _DATE_VRS and tag not in DATES_NOT_RETAINED):
            return "C"
        return basic

    def deidentify(self, ds: Dataset, *, pixels_blanked: bool = False) -> DeidentificationReport:
        """De-identify ``ds`` in place (its file meta too); see the module's docstring."""
        report = DeidentificationReport()
        patient = str(ds.get("PatientID", "") or "")
        shift = self.date_shift_days(patient) if self.options.retain_modified_dates else None
        report.date_shift_days = shift
        keep_uids = self.keep_deidentified_uids and str(ds.get("PatientIdentityRemoved", "")).strip().upper() == "YES"
        self._walk(ds, _Pass(report, shift, patient, keep_uids))
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            for tag in _META_REMOVED:
                if tag in meta:
                    del meta[tag]
            if "MediaStorageSOPInstanceUID" in meta and not keep_uids:
                meta.MediaStorageSOPInstanceUID = self.uid(str(meta.MediaStorageSOPInstanceUID))
        self._mark(ds, report, pixels_blanked)
        return report

    def _walk(self, ds: Dataset, run: _Pass) -> None:
        for tag in list(ds.keys()):
            t = int(tag)
            group = t >> 16
            if group % 2 == 1:
                del ds[tag]
                run.report.private_removed += 1
                continue
            if group & 0xFF00 in (0x5000, 0x6000):  # curves, overlays
                del ds[tag]
                run.report.removed += 1
                continue
            elem = ds[tag]
            vr = _vr(elem)
            action = self.action(t, vr)
            if action is None:
                if vr == "SQ":
                    self._items(elem, run)
                continue
            if action == "CLEAN":
                cleaned = self._clean(elem.value)
                if cleaned is not None:
                    elem.value = cleaned
                    run.report.kept += 1
                    continue
                action = self._actions[t]
            self._apply(ds, elem, _resolve(action, vr), vr, run)

    def _clean(self, value: Any) -> str | None:
        cleaner = self.options.clean_descriptors
        if cleaner is None or value is None or not isinstance(value, str):
            return None
        return cleaner(value)

    def _items(self, elem: DataElement, run: _Pass) -> None:
        for item in elem.value or ():
            self._walk(item, run)

    def _apply(self, ds: Dataset, elem: DataElement, action: str, vr: str, run: _Pass) -> None:
        tag, report = int(elem.tag), run.report
        if action == "X":
            del ds[elem.tag]
            report.removed += 1
        elif action == "K":
            report.kept += 1
        elif action == "C" and run.shift is not None:
            elem.value = _shift(elem.value, vr, run.shift)
            report.dates_shifted += 1
        elif action in ("U", "D") and vr == "UI":
            if not run.keep_uids:
                elem.value = _map_values(elem.value, self.uid)
                report.uids += 1
        elif action == "U":
            elem.value = _empty(vr)
            report.emptied += 1
        elif action in ("Z", "D") and tag in _PSEUDONYMS:
            elem.value = self.pseudonym(run.patient) if tag == 0x00100020 else f"{self.pseudonym(run.patient)}^"
            report.replaced += 1
        elif action == "Z":
            elem.value = _empty(vr)
            report.emptied += 1
        elif action == "SEQ" or vr == "SQ":  # a sequence kept (X/Z/U*) or replaced (D): its items de-identified
            self._items(elem, run)
        else:  # "D"
            elem.value = _dummy(vr)
            report.replaced += 1

    def _mark(self, ds: Dataset, report: DeidentificationReport, pixels_blanked: bool) -> None:
        ds.PatientIdentityRemoved = "YES"
        names = ["DICOM PS3.15 E.1 Basic Profile"]
        codes = [PROFILE_CODES["basic"]]
        if self.options.retain_modified_dates:
            names.append("Modified Dates")
            codes.append(PROFILE_CODES["modified_dates"])
        if self.options.retain_patient_characteristics:
            names.append("Patient Characteristics")
            codes.append(PROFILE_CODES["patient_characteristics"])
        if self.options.clean_descriptors is not None:
            names.append("Clean Descriptors")
            codes.append(PROFILE_CODES["clean_descriptors"])
        ds.DeidentificationMethod = names
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if self.options.retain_modified_dates else "REMOVED"
        if pixels_blanked:
            ds.BurnedInAnnotation = "NO"
        report.burned_in_annotation = str(ds.get("BurnedInAnnotation", "") or "")
        if report.burned_in_text_may_remain:
            report.notes.append("pixels not blanked: burned-in text may remain")


# --------------------------------------------------------------------------- values
def _vr(elem: DataElement) -> str:
    vr = str(elem.VR)
    if vr in ("UN", "") or " or " in vr:
        try:
            vr = str(dictionary_VR(elem.tag)).split(" or ")[0]
        except KeyError:
            pass
    return vr


def _resolve(action: str, vr: str) -> str:
    """A compound action as applied: the last choice, which keeps the data set conformant."""
    if action in ("Z/D", "X/D", "X/Z/D"):
        return "D"
    if action == "X/Z":
        return "Z"
    if action == "X/Z/U*":
        return "SEQ" if vr == "SQ" else ("U" if vr == "UI" else "Z")
    if action == "Z" and vr == "SQ":
        return "Z"
    return action


def _empty(vr: str) -> Any:
    if vr == "SQ":
        return Sequence()
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b""
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT"):
        return None
    return ""


def _dummy(vr: str) -> Any:
    if vr == "DA":
        return _DUMMY_DATE
    if vr == "TM":
        return "000000.00"
    if vr == "DT":
        return _DUMMY_DATE + "000000.000000"
    if vr == "AS":
        return "000D"
    if vr in ("DS", "IS"):
        return "0"
    if vr in ("US", "SS", "UL", "SL", "SV", "UV"):
        return 0
    if vr in ("FL", "FD"):
        return 0.0
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"\x00\x00"
    if vr == "AT":
        return 0
    if vr == "UR":
        return "urn:anonymized"
    if vr == "PN":
        return "ANONYMIZED^"
    return "ANONYMIZED"  # AE, CS, SH, LO, ST, LT, UT, UC: within every length limit


def _map_values(value: Any, fn: Any) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, (str, bytes)):
        return fn(value.decode("ascii", "replace") if isinstance(value, bytes) else value)
    return [fn(str(v)) for v in value]


def _shift_one(text: str, vr: str, days: int) -> str:
    text = text.strip()
    if not text or vr == "TM":  # whole days: the time of day does not move
        return text
    try:
        date = dt.date(int(text[0:4]), int(text[4:6] or 1), int(text[6:8] or 1))
    except ValueError:
        return _DUMMY_DATE if vr == "DA" else _DUMMY_DATE + text[8:]
    moved = (date - dt.timedelta(days=days)).strftime("%Y%m%d")
    if vr == "DA":
        return moved
    return moved + text[8:]  # DT: the time and any UTC offset stay


def _shift(value: Any, vr: str, days: int) -> Any:
    if value is None:
        return value
    if isinstance(value, str):
        return _shift_one(value, vr, days)
    if isinstance(value, Iterable):
        return [_shift_one(str(v), vr, days) for v in value]
    return _shift_one(str(value), vr, days)


# --------------------------------------------------------------------------- burned-in text
@dataclass(frozen=True)
class BlankResult:
    """Pixels with everything outside the breast set to the background value, and what was found there."""

    pixels: np.ndarray  # same shape and dtype as the input
    blanked_pixels: int  # pixels that changed value
    text_components: int  # bright small objects found outside the breast (burned-in text, markers)
    text_touches_breast: bool  # one of them reaches the breast: text may continue inside it


def _reduce(values: np.ndarray, f: int) -> np.ndarray:
    return np.asarray(float_image(values).reduce(f)) if f > 1 else values


def blank_outside_breast(stored: np.ndarray, inverted: bool = False, margin: int = 2) -> BlankResult:
    """Set every pixel outside the breast (inference.imaging.geometry.breast_mask, grown by ``margin``
    cells of its grid) to the background value: the least stored value, or the greatest for an
    inverted (MONOCHROME1) image. Raises errors.PreprocessError when no breast is found.

    Best effort at burned-in text, which is drawn at (nearly) full scale: such pixels are taken out
    before the breast is outlined, so a label laid across the skin line is not taken for breast and
    its outer part is blanked; one that lies partly inside and partly outside the breast is reported
    (text inside the breast cannot be told from tissue, and is not blanked). Bright objects outside
    the breast (markers, labels) are counted.
    """
    if stored.ndim != 2:
        raise ValueError(f"expected one 2-D frame, got shape {stored.shape}")
    values = stored.astype(np.float32)
    if inverted:
        np.negative(values, out=values)
    first, f = breast_mask(values)
    small = _reduce(values, f)[: first.shape[0], : first.shape[1]]
    first = first[: small.shape[0], : small.shape[1]]
    lo, hi = (float(v) for v in np.percentile(small, [1.0, 99.5]))
    top = float(small.max())
    candidates = small >= lo + 0.95 * (top - lo)  # burned-in text is drawn at (nearly) full scale
    if candidates.any():  # outline the breast without them
        cleaned = small.copy()
        cleaned[candidates] = np.percentile(small, 1.0)
        mask, _ = breast_mask(cleaned)
        mask = mask[: small.shape[0], : small.shape[1]]
    else:
        mask = first
    grown = ndimage.binary_dilation(mask, iterations=margin) if margin > 0 else mask
    eight = np.ones((3, 3), bool)
    labels, _ = ndimage.label(candidates, structure=eight)
    out_ids, in_ids = np.unique(labels[candidates & ~grown]), np.unique(labels[candidates & grown])
    crossing = set(out_ids.tolist()) & set(in_ids.tolist())
    _, objects = ndimage.label((small - lo > 0.1 * (hi - lo)) & ~grown, structure=eight)
    rows, cols = stored.shape
    full = np.repeat(np.repeat(grown, f, axis=0), f, axis=1)
    if full.shape[0] < rows or full.shape[1] < cols:
        full = np.pad(full, ((0, max(0, rows - full.shape[0])), (0, max(0, cols - full.shape[1]))), mode="edge")
    outside = ~full[:rows, :cols]
    background = stored.max() if inverted else stored.min()
    out = stored.copy()
    blanked = int(np.count_nonzero(out[outside] != background))
    out[outside] = background
    return BlankResult(out, blanked, int(objects), bool(crossing))


@dataclass(frozen=True)
class DatasetBlanking:
    """What :func:`blank_dataset` did to one data set's pixels."""

    blanked: bool
    text_components: int | None = None  # bright objects found outside the breast (None: not looked at)
    text_touches_breast: bool | None = None  # one of them reaches the breast (None: not looked at)
    note: str = ""  # why the pixels were not blanked ("" when they were)


def blank_dataset(ds: Dataset) -> DatasetBlanking:
    """Blank the pixels outside the breast of a single-frame monochrome data set, in place.

    Compressed pixel data are decompressed first (the data set becomes Explicit VR Little Endian);
    the values are written back in the data set's byte order. Colour, multi-frame images and images
    in which no breast is found are left as they are, with the reason in ``note``. Pass
    ``pixels_blanked=result.blanked`` to :meth:`Deidentifier.deidentify`.
    """
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2") or frames != 1:
        return DatasetBlanking(False, note=f"pixels not blanked: {photometric or 'unknown'} image of {frames} frame(s)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress(generate_instance_uid=False)
        stored = ds.pixel_array
    try:
        result = blank_outside_breast(np.asarray(stored), inverted=photometric == "MONOCHROME1")
    except PreprocessError as exc:
        return DatasetBlanking(False, note=f"pixels not blanked: {exc.reason}")
    data = np.ascontiguousarray(result.pixels)
    if not ds.file_meta.TransferSyntaxUID.is_little_endian and data.dtype.itemsize > 1:
        data = data.astype(data.dtype.newbyteorder(">"))  # the file's byte order
    ds.PixelData = data.tobytes()
    return DatasetBlanking(True, result.text_components, result.text_touches_breast)
