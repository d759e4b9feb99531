"""Lesion targets of the segmentation task: records, alignment with the model input, readers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.errors import FormatError
from inference.formats import LabelRow, TaskLabel, read_label_manifest
from inference.phantoms.generator import Mass, PhantomSpec, render_with_truth, write_png
from training.cli import main as training_main
from training.data import ImageDataset, collate, model_input
from training.lesions import (
    LesionRecord,
    lesion_maps,
    lesions_path_for,
    mias_lesions,
    read_lesions,
    write_lesions,
)
from training.model import LESION_STRIDE

HEIGHT = 256


def _phantom_with_mask(
    folder: Path, laterality: str, name: str = "img", seed: int = 4
) -> tuple[Path, Path, tuple[float, float, float]]:
    """A phantom with one drawn mass, its PNG, and a binary mask PNG of that mass (255 inside)."""
    spec = PhantomSpec(laterality, "CC", "B", masses=(Mass(0.45, 0.45, 0.07),), shape=(384, 288), seed=seed)  # type: ignore[arg-type]  # "L"/"R" as a plain str
    image, truth = render_with_truth(spec)
    (m,) = truth.masses
    img_path = folder / f"{name}.png"
    write_png(img_path, image)
    rows, cols = np.ogrid[: image.shape[0], : image.shape[1]]
    mask = ((rows - m.y) ** 2 + (cols - m.x) ** 2 <= m.radius**2).astype(np.uint8) * 255
    mask_path = folder / f"{name}.mask.png"
    Image.fromarray(mask).save(mask_path)
    return img_path, mask_path, (m.y, m.x, m.radius)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_a_drawn_lesion_stays_under_its_mask_through_preprocessing(tmp_path: Path, laterality: str) -> None:
    img_path, mask_path, (y, x, r) = _phantom_with_mask(tmp_path, laterality)
    row = LabelRow(key="k", image=img_path.name, labels={})
    ds = ImageDataset([row], HEIGHT, tmp_path, lesions={"k": LesionRecord("k", "outline", mask=str(mask_path))})
    maps = ds.lesion(0)
    assert maps is not None
    target, weight = maps
    image = ds.array(0)
    assert target.shape == (HEIGHT // LESION_STRIDE, image.shape[1] // LESION_STRIDE)
    assert np.all(weight == 1.0)
    # where the geometry puts the mass's centre and radius in model space, on the lesion grid
    geometry = model_input(img_path, HEIGHT).geometry
    assert geometry.flipped == (laterality == "R")
    my, mx = geometry.original_to_model(y, x)
    gy, gx = np.ogrid[: target.shape[0], : target.shape[1]]
    centre = ((gy * LESION_STRIDE + 1.5 - my) ** 2 + (gx * LESION_STRIDE + 1.5 - mx) ** 2) ** 0.5
    expected = centre <= r * geometry.scale[0]
    assert _dice(target > 0.5, expected) > 0.9
    # and the mass is really there in the model input: brighter under the mask than around it
    cells = image.reshape(target.shape[0], LESION_STRIDE, target.shape[1], LESION_STRIDE).mean(axis=(1, 3))
    ring = (centre > 1.3 * r * geometry.scale[0]) & (centre < 2.0 * r * geometry.scale[0])
    assert cells[target > 0.9].mean() > cells[ring].mean() + 0.05


def test_circles_are_uncertain_inside_and_certain_outside(tmp_path: Path) -> None:
    img_path, _, (y, x, r) = _phantom_with_mask(tmp_path, "L")
    geometry = model_input(img_path, HEIGHT).geometry
    maps = lesion_maps(LesionRecord("k", "circles", circles=((y, x, 2 * r),), u=0.5), geometry, LESION_STRIDE)
    target, weight = maps
    inside = target > 0.99
    assert inside.sum() > 10
    np.testing.assert_allclose(weight[inside], 0.5, atol=5e-3)  # the resize's filter reaches past the edge
    assert np.all(weight[target == 0.0] == 1.0)
    none = lesion_maps(LesionRecord("k", "none"), geometry, LESION_STRIDE)
    assert np.all(none[0] == 0.0) and np.all(none[1] == 1.0) and none.shape == maps.shape


def test_no_record_means_weight_zero_and_a_batch_without_records_has_no_lesion_targets(tmp_path: Path) -> None:
    img_path, mask_path, _ = _phantom_with_mask(tmp_path, "L")
    rows = [LabelRow(key=k, image=img_path.name, labels={}) for k in ("a", "b")]
    ds = ImageDataset(rows, HEIGHT, tmp_path, lesions={"a": LesionRecord("a", "outline", mask=str(mask_path))})
    assert ds.lesion(1) is None
    batch = collate([ds.sample(0), ds.sample(1)])
    assert batch.lesion is not None
    assert batch.lesion.weight[0].min() == 1.0 and batch.lesion.weight[1].max() == 0.0
    assert batch.lesion.target[0].max() > 0.9
    assert collate([ds.sample(1)]).lesion is None


def test_lesion_maps_are_cached_beside_the_image(tmp_path: Path) -> None:
    img_path, mask_path, _ = _phantom_with_mask(tmp_path, "R")
    rows = [LabelRow(key="k", image=img_path.name, labels={})]
    lesions = {"k": LesionRecord("k", "outline", mask=str(mask_path))}
    first = ImageDataset(rows, HEIGHT, tmp_path, tmp_path / "cache", lesions=lesions).lesion(0)
    assert len(list((tmp_path / "cache" / str(HEIGHT)).glob("*.lesion4.npy"))) == 1
    mask_path.unlink()  # the second dataset must read the cache, not the mask
    again = ImageDataset(rows, HEIGHT, tmp_path, tmp_path / "cache", lesions=lesions).lesion(0)
    np.testing.assert_array_equal(first, again)


def test_a_mask_of_another_size_is_refused_and_the_image_skipped(tmp_path: Path) -> None:
    img_path, _, _ = _phantom_with_mask(tmp_path, "L")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    rows = [LabelRow(key="k", image=img_path.name, labels={})]
    lesions = {"k": LesionRecord("k", "outline", mask=str(tmp_path / "small.png"))}
    ds = ImageDataset(rows, HEIGHT, tmp_path, lesions=lesions)
    failed = ds.prepare()
    assert len(failed) == 1 and "does not match" in failed[0][1]


def test_records_round_trip_and_bad_rows_are_format_errors(tmp_path: Path) -> None:
    (tmp_path / "m.png").write_bytes(b"")
    records = [
        LesionRecord("a", "outline", mask=str(tmp_path / "m.png")),
        LesionRecord("b", "circles", circles=((10.0, 20.5, 3.0), (1.0, 2.0, 4.0)), u=0.5),
        LesionRecord("c", "none"),
    ]
    path = write_lesions(lesions_path_for(tmp_path / "manifest.csv"), records)
    assert path.name == "manifest.lesions.csv"
    assert read_lesions(path) == {r.key: r for r in records}
    path.write_text("key,lesion,mask,circles,u\nx,blob,,,0\n", encoding="utf-8")
    with pytest.raises(FormatError, match="blob"):
        read_lesions(path)
    with pytest.raises(ValueError, match="needs a mask"):
        LesionRecord("a", "outline")


def test_mias_circles_have_their_origin_at_the_bottom_left(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((100, 80), np.uint8)).save(tmp_path / "images" / "mdb001.png")
    Image.fromarray(np.zeros((100, 80), np.uint8)).save(tmp_path / "images" / "mdb002.png")
    Image.fromarray(np.zeros((100, 80), np.uint8)).save(tmp_path / "images" / "mdb003.png")
    with open(tmp_path / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "abnormality", "lesions_x_y_radius"])
        w.writerows([["mdb001.png", "CIRC", "30:10:5;40:50:6"], ["mdb002.png", "NORM", ""], ["mdb003.png", "CALC", ""]])
    rows = [
        LabelRow(key=f"k{i}", image=str(tmp_path / "images" / f"mdb00{i}.png"), labels={}) for i in (1, 2, 3)
    ]
    got = {r.key: r for r in mias_lesions(tmp_path, rows)}
    assert got["k1"].kind == "circles" and got["k1"].u == 0.5
    assert got["k1"].circles == ((90.0, 30.0, 5.0), (50.0, 40.0, 6.0))  # row = height - y
    assert got["k2"].kind == "none"
    assert "k3" not in got  # an abnormality without a place: nothing known, weight 0


def test_manifest_command_writes_ddsm_rows_lesions_and_borrowed_splits(tmp_path: Path) -> None:
    src = tmp_path / "ddsm"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    recs = []
    for case in ("0001", "0002", "0003"):
        for lat in ("L", "R"):
            img, mask, _ = _phantom_with_mask(src / "images", lat, f"{case}_{lat}_CC", seed=int(case) * 2 + len(lat))
            lesion = lat == "L"
            if lesion:
                mask.rename(src / "masks" / f"{case}_{lat}_CC.png")
            else:
                mask.unlink()
            recs.append([f"images/{img.name}", case, lat, "CC", "B", "3" if lesion else "1",
                         "benign" if lesion else "normal", "0", f"masks/{case}_{lat}_CC.png" if lesion else ""])
    with open(src / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "case", "laterality", "view", "density", "birads", "finding", "malignant", "mask"])
        w.writerows(recs)
    # another manifest that already placed woman 0001 in validation
    other = tmp_path / "other.csv"
    other.write_text("key,image,patient,split\nx,whatever.png,ddsm-0001,validation\n", encoding="utf-8")
    out = tmp_path / "out" / "manifest.csv"
    args = ["manifest", "ddsm-mini", str(src), "--out", str(out), "--splits-from", str(other), "--new-women", "train"]
    assert training_main(args) == 0
    rows = read_label_manifest(out)
    assert len(rows) == 6
    assert {r.patient: r.split for r in rows} == {"ddsm-0001": "validation", "ddsm-0002": "train", "ddsm-0003": "train"}
    assert all(r.label("malignancy") == TaskLabel("benign", 0.0) for r in rows)
    lesions = read_lesions(lesions_path_for(out))
    kinds = sorted((r.laterality, lesions[r.key].kind) for r in rows)
    assert kinds == [("L", "outline")] * 3 + [("R", "none")] * 3


def test_lesions_file_neutralises_formulas_and_reads_them_back(tmp_path: Path) -> None:
    records = [
        LesionRecord(key="=HYPERLINK(\"x\")", kind="outline", mask=str(tmp_path / "+mask.png")),
        LesionRecord(key="@SUM", kind="circles", circles=((10.0, 20.0, 5.0),), u=0.5),
    ]
    path = write_lesions(tmp_path / "m.lesions.csv", records)
    cells = [c for row in csv.reader(path.read_text(encoding="utf-8").splitlines()) for c in row]
    assert not any(c[:1] in ("=", "+", "-", "@", "\t", "\r") for c in cells)
    back = read_lesions(path)
    assert back["=HYPERLINK(\"x\")"].mask == str(tmp_path / "+mask.png")
    assert back["@SUM"].circles == ((10.0, 20.0, 5.0),) and back["@SUM"].u == 0.5
