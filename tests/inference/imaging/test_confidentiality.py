"""De-identification against DICOM PS3.15 Table E.1-1 itself, attribute by attribute, top level and nested.

The table is read from the standard's data (../shared/docs/ps315-table-e1-1.json beside the clone): a
missing copy fails the test, it is never skipped.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from inference.errors import PreprocessError
from inference.imaging.confidentiality import (
    DATES_NOT_RETAINED,
    MAMMOGRAPHY_DESCRIPTORS,
    PATIENT_CHARACTERISTICS,
    Deidentifier,
    ProfileOptions,
    basic_profile_actions,
    blank_outside_breast,
)
from inference.phantoms import generator as phantom

ROOT = Path(__file__).resolve().parents[3]
TABLE_PATH = ROOT.parent / "shared" / "docs" / "ps315-table-e1-1.json"
KEY = b"0123456789abcdef-test-key"
NESTED = 0x00540220  # View Code Sequence: not in the table, so kept, and its items de-identified


def _table() -> list[dict[str, str]]:
    if not TABLE_PATH.is_file():
        pytest.fail(f"the standard's table is missing: {TABLE_PATH} (a copy of shared/ sits beside the clone)")
    rows: list[dict[str, str]] = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    return rows


def _concrete() -> list[dict[str, str]]:
    return [r for r in _table() if len(r["id"]) == 8 and all(c in "0123456789abcdefABCDEF" for c in r["id"])]


def _vr(tag: int) -> str:
    return str(dictionary_VR(tag)).split(" or ")[0]


def _value(tag: int, vr: str) -> Any:
    text = f"S{tag:08X}"
    return {
        "PN": f"Secret^{tag:08X}", "DA": "20200315", "TM": "101112", "DT": "20200315101112",
        "UI": f"1.2.826.0.1.3680043.2.1125.{tag}", "DS": "42.5", "IS": "42", "AS": "045Y",
        "UR": f"http://secret.example/{tag:08X}", "US": 42, "SS": 42, "UL": 42, "SL": 42, "FL": 4.5, "FD": 4.5,
        "OB": f"SECRET{tag:08X}".encode(), "UN": f"SECRET{tag:08X}".encode(), "OW": f"SECRET{tag:08X}".encode(),
    }.get(vr, text)


def _secret_item(tag: int) -> Dataset:
    item = Dataset()
    item.add_new(0x0040A123, "PN", f"Inner^{tag:08X}")  # Person Name: D
    item.add_new(0x00081155, "UI", f"1.2.826.0.1.3680043.2.1125.9.{tag}")  # Referenced SOP Instance UID: U
    item.add_new(0x00080104, "LO", "kept meaning")  # Code Meaning: not in the table
    return item


def _fill(ds: Dataset, rows: list[dict[str, str]], with_sequences: bool) -> None:
    for row in rows:
        tag = int(row["id"], 16)
        vr = _vr(tag)
        if vr == "SQ":
            if with_sequences:
                ds.add_new(tag, "SQ", Sequence([_secret_item(tag)]))
            continue
        ds.add_new(tag, vr, _value(tag, vr))


def _dataset(rows: list[dict[str, str]], patient: str = "P-001") -> Dataset:
    ds = Dataset()
    _fill(ds, rows, with_sequences=True)
    nested = Dataset()
    _fill(nested, rows, with_sequences=False)
    ds.add_new(NESTED, "SQ", Sequence([nested]))
    ds.PatientID = patient
    ds.BurnedInAnnotation = "YES"
    ds.add_new(0x00091010, "LO", "private secret")
    nested.add_new(0x00291010, "LO", "nested private secret")
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)  # overlay data
    ds.add_new(0x60020010, "US", 16)  # overlay rows, second overlay group
    ds.add_new(0x50000010, "US", 3)  # curve dimensions
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.77"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.SourceApplicationEntityTitle = "SECRETAE"
    return ds


def _strings(value: Any) -> list[str]:
    if isinstance(value, Sequence):
        return [s for item in value for elem in item for s in _strings(elem.value)]
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


def _check_row(out: Dataset, original: Dataset, row: dict[str, str], d: Deidentifier, where: str) -> None:
    tag = int(row["id"], 16)
    vr = _vr(tag)
    if tag not in original:
        return
    before = original[tag].value
    action = row["basicProfile"]
    name = f"{where} {row['tag']} {row['name']} ({action})"
    present = tag in out
    after = out[tag].value if present else None
    if action == "X":
        assert not present, name
    elif action == "Z":
        assert present, name
        assert after in ("", None, b"") or len(after) == 0 or tag in (0x00100010, 0x00100020), name
    elif action == "U":
        assert present, name
        assert str(after) == d.uid(str(before)) and str(after).startswith("2.25."), name
    elif action == "D":
        assert present and after not in ("", None, b""), name
    elif action in ("X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"):
        pass  # any of the choices; the value is checked below
    else:
        pytest.fail(f"unknown action {action!r} for {name}")
    if vr == "SQ":
        if present and len(after):
            item = after[0]
            assert 0x0040A123 not in item or str(item[0x0040A123].value) != f"Inner^{tag:08X}", name
            assert 0x00081155 not in item or str(item[0x00081155].value).startswith("2.25."), name
    elif present:
        assert not (set(_strings(after)) & set(_strings(before))), f"{name}: kept {after!r}"


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return _concrete()


def test_the_table_is_the_standards(rows: list[dict[str, str]]) -> None:
    actions = basic_profile_actions()
    assert len(rows) > 600
    wrong = [(r["tag"], r["name"], r["basicProfile"], actions.get(int(r["id"], 16))) for r in rows
             if actions.get(int(r["id"], 16)) != r["basicProfile"]]
    assert not wrong
    kept = {int(r["id"], 16) for r in rows if r.get("rtnPatCharsOpt") == "K"}
    assert kept == PATIENT_CHARACTERISTICS
    dates = {int(r["id"], 16) for r in rows if _vr(int(r["id"], 16)) in ("DA", "DT", "TM")}
    shifted = {int(r["id"], 16) for r in rows if r.get("rtnLongModifDatesOpt") == "C"}
    assert dates - shifted == DATES_NOT_RETAINED
    patterns = {r["id"] for r in _table()} - {r["id"] for r in rows}
    assert patterns == {"50xxxxxx", "60xx4000", "60xx3000", "ggggeeee-where-gggg-is-odd"}


def test_basic_profile_attribute_by_attribute(rows: list[dict[str, str]]) -> None:
    d = Deidentifier(KEY)
    original = _dataset(rows)
    out = _dataset(rows)
    report = d.deidentify(out)
    nested_before, nested_after = original[NESTED].value[0], out[NESTED].value[0]
    for row in rows:
        _check_row(out, original, row, d, "top")
        _check_row(nested_after, nested_before, row, d, "nested")
    secrets = {s for elem in original for s in _strings(elem.value)} - {s for elem in out for s in _strings(elem.value)
                                                                       if elem.tag == NESTED}
    # no original value of a table attribute survives anywhere (numbers 42 and dummy-free values aside)
    table_tags = {int(r["id"], 16) for r in rows}
    leaked = []
    flat = {s for elem in out for s in _strings(elem.value)}
    for elem in original:
        if int(elem.tag) in table_tags and elem.VR not in ("US", "SS", "UL", "SL", "FL", "FD", "DS", "IS", "SQ"):
            leaked += [s for s in _strings(elem.value) if s in flat]
    assert not leaked
    assert secrets
    assert out.PatientIdentityRemoved == "YES"
    codes = [(i.CodeValue, i.CodingSchemeDesignator) for i in out.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM")]
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert out.BurnedInAnnotation == "YES" and report.burned_in_text_may_remain
    for tag in (0x00091010, 0x60003000, 0x60020010, 0x50000010):
        assert tag not in out
    assert 0x00291010 not in nested_after
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.PatientID == d.pseudonym("P-001") and report.private_removed == 2


def test_options_keep_characteristics_and_shift_dates(rows: list[dict[str, str]]) -> None:
    d = Deidentifier(KEY, ProfileOptions(retain_modified_dates=True, retain_patient_characteristics=True))
    original = _dataset(rows)
    out = _dataset(rows)
    report = d.deidentify(out)
    days = d.date_shift_days("P-001")
    assert report.date_shift_days == days and 1 <= days <= 3650
    moved = (dt.date(2020, 3, 15) - dt.timedelta(days=days)).strftime("%Y%m%d")
    for level_before, level_after in ((original, out), (original[NESTED].value[0], out[NESTED].value[0])):
        for row in rows:
            tag = int(row["id"], 16)
            vr = _vr(tag)
            if tag not in level_before:
                continue
            name = f"{row['tag']} {row['name']}"
            if row.get("rtnPatCharsOpt") == "K":
                assert level_after[tag].value == level_before[tag].value, name
            elif row.get("rtnPatCharsOpt") == "C":
                assert tag not in level_after or level_after[tag].value != level_before[tag].value, name
            elif row.get("rtnLongModifDatesOpt") == "C" and vr in ("DA", "DT", "TM"):
                expected = {"DA": moved, "DT": moved + "101112", "TM": "101112"}[vr]
                assert level_after[tag].value == expected, name
            elif vr in ("DA", "DT", "TM") and tag in level_after:
                assert level_after[tag].value in ("", None, "19000101", "000000.00", "19000101000000.000000"), name
    codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107", "113108"]
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"


def test_consistency_across_files_and_keys(rows: list[dict[str, str]]) -> None:
    d = Deidentifier(KEY, ProfileOptions(retain_modified_dates=True))
    subset = [r for r in rows if int(r["id"], 16) in (0x0020000D, 0x00080020, 0x00080018)]
    a, b = _dataset(subset, "P-001"), _dataset(subset, "P-001")
    study = str(a.StudyInstanceUID)
    d.deidentify(a)
    d.deidentify(b)
    assert a.StudyInstanceUID == b.StudyInstanceUID != study
    assert d.date_shift_days("P-001") == Deidentifier(KEY).date_shift_days("P-001")
    assert Deidentifier(b"another key of 16+ bytes").uid(study) != a.StudyInstanceUID
    assert len({d.date_shift_days(f"P-{i}") for i in range(50)}) > 40
    uid = d.uid("1.2.3")
    assert len(uid) <= 64 and uid[5] != "0"
    with pytest.raises(ValueError, match="16 bytes"):
        Deidentifier(b"short")


def test_blanking_sets_burned_in_annotation_no(rows: list[dict[str, str]]) -> None:
    out = _dataset(rows[:20])
    report = Deidentifier(KEY).deidentify(out, pixels_blanked=True)
    assert out.BurnedInAnnotation == "NO" and not report.burned_in_text_may_remain


def _phantom(**kw: Any) -> tuple[np.ndarray, phantom.PhantomTruth]:
    spec = phantom.PhantomSpec("R", "CC", shape=(320, 240), seed=9, **kw)
    image, truth = phantom.render_with_truth(spec)
    return (image * 4095).astype(np.uint16), truth


def test_blank_outside_breast_removes_the_marker() -> None:
    stored, truth = _phantom()
    assert truth.markers, "the phantom carries a burned-in marker"
    y0, x0, y1, x1 = truth.markers[0]
    assert stored[y0:y1, x0:x1].max() > 3000
    result = blank_outside_breast(stored)
    assert result.pixels.dtype == stored.dtype and result.pixels.shape == stored.shape
    assert result.pixels[y0:y1, x0:x1].max() == stored.min()
    assert result.text_components >= 1 and not result.text_touches_breast
    assert result.blanked_pixels > 0
    b0, b1, b2, b3 = truth.breast_bbox
    inside = slice(b0 + 10, b2 - 10), slice(b1 + 10, b3 - 10)
    np.testing.assert_array_equal(result.pixels[inside], stored[inside])  # the breast is untouched


def test_text_reaching_the_breast_is_flagged() -> None:
    stored, truth = _phantom(markers=False)
    y0, x0, y1, x1 = truth.breast_bbox
    mid = (y0 + y1) // 2
    col = x1 if x1 < stored.shape[1] - 40 else x0 - 1
    step = 1 if col == x1 else -1
    edge = col
    while 0 < edge < stored.shape[1] - 1 and stored[mid, edge] > stored.min() + 200:
        edge += step
    lo, hi = sorted((edge - 8 * step, edge + 30 * step))
    stored[mid - 6: mid + 6, lo:hi] = 4095  # a label laid across the skin line
    result = blank_outside_breast(stored)
    assert result.text_touches_breast
    assert result.pixels[mid, min(lo, hi - 30):lo + 20].max() == stored.min()  # its outer part is blanked


def test_blank_outside_breast_inverted_and_blank() -> None:
    stored, truth = _phantom()
    inverted = (4095 - stored).astype(np.uint16)
    result = blank_outside_breast(inverted, inverted=True)
    y0, x0, y1, x1 = truth.markers[0]
    assert result.pixels[y0:y1, x0:x1].min() == inverted.max()
    with pytest.raises(PreprocessError):
        blank_outside_breast(np.zeros((64, 64), np.uint16))


def _only_view_words(text: str) -> str | None:
    words = text.upper().split()
    return text if all(w in {"L", "R", "CC", "MLO"} for w in words) else None


def test_clean_descriptors_option(rows: list[dict[str, str]]) -> None:
    options = {int(r["id"], 16) for r in rows if r.get("cleanDescOpt") == "C"}
    assert MAMMOGRAPHY_DESCRIPTORS <= options  # the default descriptors are the option's attributes
    d = Deidentifier(KEY, ProfileOptions(clean_descriptors=_only_view_words))
    ds = Dataset()
    ds.SeriesDescription, ds.StudyDescription, ds.ProtocolName = "R CC", "Dr Smith's screening", "L MLO"
    ds.ImageComments = "R CC"  # not a default descriptor: the basic action (X)
    d.deidentify(ds)
    assert (ds.SeriesDescription, ds.ProtocolName) == ("R CC", "L MLO")
    assert "StudyDescription" not in ds and "ImageComments" not in ds
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100", "113105"]


def test_already_deidentified_data_sets_may_keep_their_uids() -> None:
    def fresh() -> Dataset:
        ds = Dataset()
        ds.PatientIdentityRemoved = "YES"
        ds.SOPInstanceUID, ds.StudyInstanceUID = "2.25.123", "2.25.456"
        return ds

    kept = fresh()
    Deidentifier(KEY, keep_deidentified_uids=True).deidentify(kept)
    assert (kept.SOPInstanceUID, kept.StudyInstanceUID) == ("2.25.123", "2.25.456")
    mapped = fresh()
    Deidentifier(KEY).deidentify(mapped)
    assert mapped.SOPInstanceUID != "2.25.123"
