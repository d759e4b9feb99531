"""The latent-space explorer: points, colours, selection, linking with the viewer, hover, similar cases."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from app.models.explorer import ExplorerState, points_in_polygon
from app.models.state import AppState, Backend
from app.widgets.explorer import CATEGORY_COLOURS, UNKNOWN_COLOUR, ExplorerPanel
from inference.formats import TASK_CLASSES, Embeddings, ModelManifest, write_embeddings
from inference.imaging.decode import LoadedImage
from inference.imaging.studies import ImageRecord, Study, StudySet
from inference.latent.projection import ProjectionParams
from inference.model.predict import Prediction
from inference.model.preprocess import Geometry

from ..conftest import wait_workers

CLUSTERS = 3
VERSION = "fake-1"
HEAD_W = np.random.default_rng(9).normal(0, 4, (2, 496)).astype(np.float32)  # the manifest's malignancy head


def _record(i: int) -> ImageRecord:
    return ImageRecord(
        key=f"K{i:04d}",
        path=Path(f"/nowhere/P{i // 4}/{i}.dcm"),
        kind="dicom",
        patient_id=f"P{i // 4}",
        patient_name="",
        study_uid=f"S{i // 4}",
        study_date="20240101",
        study_description="",
        series_uid="",
        sop_uid=f"K{i:04d}",
        laterality="RL"[i % 2],
        laterality_source="tag",
        view=("CC", "MLO")[(i // 2) % 2],
        view_source="tag",
        rows=64,
        cols=48,
        transfer_syntax="",
    )


def _z(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered latent vectors: cluster = i % CLUSTERS."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (CLUSTERS, 496)).astype(np.float32)
    labels = np.arange(n) % CLUSTERS
    z = centres[labels] + rng.normal(0, 0.3, (n, 496)).astype(np.float32)
    return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32), labels


def fake_backend(n: int) -> Backend:
    """A runtime without files or model: n images in studies of 4, clustered z, p(malignant) by cluster."""
    records = [_record(i) for i in range(n)]
    studies = tuple(
        Study(f"P{s}", f"S{s}", "20240101", "", tuple(records[s * 4 : s * 4 + 4])) for s in range((n + 3) // 4)
    )
    z, labels = _z(n)
    manifest = ModelManifest(
        name="fake",
        version=VERSION,
        input_height=64,
        outputs={t: [None, len(c)] for t, c in TASK_CLASSES.items()},
        tasks={t: list(c) for t, c in TASK_CLASSES.items()},
        heads={"malignancy": {"weight": HEAD_W.tolist(), "bias": [0.0, 0.0]}},
    )
    session = SimpleNamespace(version=VERSION, manifest=manifest, device="cpu", path=Path("fake.onnx"), threads=1)
    row = {r.key: i for i, r in enumerate(records)}

    def load_image(rec: ImageRecord) -> LoadedImage:
        px = np.tile(np.linspace(0, 1, 48, dtype=np.float32), (64, 1))
        return LoadedImage(rec, px, px, (), None, False)

    def predict(_session: Any, images: Sequence[LoadedImage]) -> list[Prediction]:
        out = []
        for img in images:
            i = row[img.record.key]
            c = int(labels[i])
            p = 0.1 + 0.8 * c / max(CLUSTERS - 1, 1)
            probs = {
                "malignancy": (1 - p, p),
                "acr": tuple(np.eye(6)[min(c + 1, 5)]),
                "density": tuple(np.eye(4)[c % 4]),
                "view": (1.0, 0.0) if img.record.view == "CC" else (0.0, 1.0),
            }
            geo = Geometry((64, 48), False, (0, 64, 0, 48), (64, 48), (64, 64))
            mi = np.zeros((64, 64), np.float32)
            mi[:, :48] = img.pixels
            out.append(Prediction(img.record.key, VERSION, probs, p, p, 0.01 * (c + 1), z[i], geo, mi, None, None))
        return out

    return Backend(
        scan=lambda paths, progress, cancelled: StudySet(studies, ()),
        load_image=load_image,
        load_model=lambda path, device: session,
        predict=predict,
    )


def opened(qtbot: Any, make_state: Any, n: int = 60) -> AppState:
    state = make_state(backend=fake_backend(n))
    state.open_paths(["/nowhere"])
    qtbot.waitUntil(lambda: len(state.runner.predictions) == n and not state.pool.running(), timeout=30000)
    return state


def panel_for(qtbot: Any, state: AppState, labels: Any = None) -> ExplorerPanel:
    panel = ExplorerPanel(state, labels)
    qtbot.addWidget(panel)
    panel.resize(900, 760)
    panel.show()
    qtbot.waitUntil(
        lambda: len(panel.explorer.keys) == len(state.runner.predictions) and not state.pool.running(), timeout=30000
    )
    return panel


def scene_pos(panel: ExplorerPanel, key: str) -> QPointF:
    row = panel.explorer.row(key)
    x, y = panel.explorer.xy[row]
    return panel.view.mapViewToScene(QPointF(float(x), float(y)))


def click_point(qtbot: Any, panel: ExplorerPanel, key: str) -> None:
    """A real mouse click on the point of ``key`` (through the plot's viewport and pyqtgraph's scene)."""
    at = panel.plot.mapFromScene(scene_pos(panel, key))
    qtbot.mouseClick(panel.plot.viewport(), Qt.MouseButton.LeftButton, pos=at)


# --------------------------------------------------------------------------- pure helpers
def test_points_in_polygon_even_odd() -> None:
    square = np.array([(0, 0), (4, 0), (4, 4), (0, 4)])
    pts = np.array([(1, 1), (5, 1), (2, 3.9), (-0.1, 2), (3.99, 0.01)])
    assert points_in_polygon(pts, square).tolist() == [True, False, True, False, True]
    u_shape = np.array([(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)])
    assert points_in_polygon(np.array([(0.5, 2), (1.5, 2), (2.5, 2), (1.5, 0.5)]), u_shape).tolist() == [
        True,
        False,
        True,
        True,
    ]
    assert not points_in_polygon(pts, square[:2]).any()


# --------------------------------------------------------------------------- the panel
def test_map_shows_every_predicted_image_with_keys_on_points(qtbot, make_state) -> None:
    state = opened(qtbot, make_state)
    panel = panel_for(qtbot, state)
    ex = panel.explorer
    assert ex.projection is not None and ex.projection.params.method == "pca"
    assert set(ex.keys) == set(state.runner.predictions) and ex.xy.shape == (60, 2)
    keys_on_points = {str(k) for k in panel.scatter.data["data"]}
    assert keys_on_points == set(state.runner.predictions)
    assert "Opened images: 60" in panel.source_label.text()


def test_click_shows_image_and_highlight_follows_current(qtbot, make_state) -> None:
    state = opened(qtbot, make_state)
    panel = panel_for(qtbot, state)
    target = state.files.study_set.images[17].key
    click_point(qtbot, panel, target)
    assert state.files.current_key == target
    ringed = np.column_stack(panel.current_item.getData())
    assert len(ringed) == 1 and tuple(ringed[0]) == pytest.approx(tuple(panel.explorer.xy[panel.explorer.row(target)]))
    other = state.files.study_set.images[3].key
    state.files.set_current(other)  # from the browser or the viewer
    assert tuple(np.column_stack(panel.current_item.getData())[0]) == pytest.approx(
        tuple(panel.explorer.xy[panel.explorer.row(other)])
    )
    wait_workers(qtbot, state)


def test_a_click_replaces_the_selection_and_opens_a_selected_point(qtbot, make_state, settings, tmp_path) -> None:
    from app.models.labels import LabelsState
    from app.widgets.label_panel import LabelPanel

    settings.store_path = tmp_path / "labels.sqlite"
    state = opened(qtbot, make_state)
    labels = LabelsState(state)
    label_panel = LabelPanel(labels)
    qtbot.addWidget(label_panel)
    panel = panel_for(qtbot, state, labels)
    ex = panel.explorer
    lo, hi = ex.xy.min(axis=0), ex.xy.max(axis=0)
    panel._on_select("box", (lo[0] - 1, lo[1] - 1, hi[0] + 1, hi[1] + 1), False)  # everything
    assert len(state.files.selection) == 60 and "60 images selected" in label_panel.target.text()
    chosen = next(k for k in ex.keys if k != state.files.current_key)
    click_point(qtbot, panel, chosen)  # an already selected point: opens it, and it alone is selected
    assert state.files.current_key == chosen
    assert state.files.selection == (chosen,) and ex.selected == (chosen,)
    assert "selected" not in label_panel.target.text() and not label_panel.clear_selection.isVisible()
    assert labels.targets() == [chosen]
    other = next(k for k in ex.keys if k not in (chosen, state.files.current_key))
    click_point(qtbot, panel, other)
    assert state.files.current_key == other and state.files.selection == (other,)
    labels.close()
    wait_workers(qtbot, state)


def test_box_and_lasso_selection_reach_app_state_and_come_back(qtbot, make_state) -> None:
    state = opened(qtbot, make_state)
    panel = panel_for(qtbot, state)
    ex = panel.explorer
    xy = ex.xy
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    mid = (lo + hi) / 2
    with qtbot.waitSignal(state.files.selection_changed):
        panel._on_select("box", (lo[0] - 1, lo[1] - 1, mid[0], hi[1] + 1), False)
    expected = {k for k, (x, _) in zip(ex.keys, xy, strict=False) if x <= mid[0]}
    assert set(state.files.selection) == expected and 0 < len(expected) < 60
    assert len(panel.selection_item.data) == len(expected)

    triangle = np.array([(lo[0] - 1, lo[1] - 1), (hi[0] + 1, lo[1] - 1), (lo[0] - 1, hi[1] + 1)])
    panel._on_select("lasso", triangle, False)
    assert set(state.files.selection) == {
        k for k, inside in zip(ex.keys, points_in_polygon(xy, triangle), strict=False) if inside
    }
    before = set(state.files.selection)
    panel._on_select("box", (mid[0], mid[1], hi[0] + 1, hi[1] + 1), True)  # Shift adds
    assert set(state.files.selection) >= before

    state.files.set_selection([ex.keys[0], ex.keys[1]])  # from the browser
    assert set(ex.selected) == {ex.keys[0], ex.keys[1]} and len(panel.selection_item.data) == 2
    panel.clear_button.click()
    assert state.files.selection == ()


def test_lasso_drag_in_the_view(qtbot, make_state) -> None:
    state = opened(qtbot, make_state)
    panel = panel_for(qtbot, state)
    panel.set_tool("lasso")
    got: list[tuple] = []
    panel.view.sigSelect.connect(lambda kind, shape, add: got.append((kind, shape, add)))
    rect = panel.view.sceneBoundingRect()
    corners = [rect.topLeft() + QPointF(5, 5), rect.topRight() + QPointF(-5, 5), rect.bottomRight() + QPointF(-5, -5)]

    class Drag:
        def __init__(self, pos: QPointF, start: bool, finish: bool) -> None:
            self.pos, self.start, self.finish = pos, start, finish

        def button(self) -> Qt.MouseButton:
            return Qt.MouseButton.LeftButton

        def accept(self) -> None:
            pass

        def scenePos(self) -> QPointF:  # noqa: N802
            return self.pos

        def buttonDownScenePos(self) -> QPointF:  # noqa: N802
            return corners[0]

        def isStart(self) -> bool:  # noqa: N802
            return self.start

        def isFinish(self) -> bool:  # noqa: N802
            return self.finish

        def modifiers(self) -> Qt.KeyboardModifier:
            return Qt.KeyboardModifier.NoModifier

    for i, c in enumerate(corners):
        panel.view.mouseDragEvent(Drag(c, i == 0, i == len(corners) - 1))
    assert got and got[0][0] == "lasso" and len(got[0][1]) >= 3
    panel._on_select(*got[0])
    inside = points_in_polygon(panel.explorer.xy, got[0][1])
    assert (
        set(state.files.selection) == {k for k, m in zip(panel.explorer.keys, inside, strict=False) if m}
        and inside.any()
    )


def test_hover_shows_thumbnail_and_values(qtbot, make_state) -> None:
    state = opened(qtbot, make_state)
    panel = panel_for(qtbot, state)
    card = panel.hover
    # K0005: patient P1, left CC, cluster 2 (p 0.9 ± 0.03); K0010: P2, right MLO, cluster 1 (p 0.5 ± 0.02)
    expected = {
        "K0005": ("P1 · L CC · 20240101", "p(malignant) 0.900 ± 0.030"),
        "K0010": ("P2 · R MLO · 20240101", "p(malignant) 0.500 ± 0.020"),
    }
    for key, lines in expected.items():
        pos = scene_pos(panel, key)
        assert panel.key_at(pos) == key
        panel._on_mouse_moved((pos,))
        assert card.isVisible() and card.key == key
        text = card.text.text()
        name = f"{int(key[1:])}.dcm"  # the file name, not the key
        assert text.startswith(f"<b>{name}</b>") and all(line in text for line in lines), text
        other = next(k for k in expected if k != key)
        assert not any(line in text for line in expected[other])
        assert card.image.isVisibleTo(card)
        assert card.image.pixmap().cacheKey() == panel.thumbnails.get(key).cacheKey()
        at = panel.plot.mapFromScene(pos)
        assert card.geometry().topLeft() == QPoint(int(at.x()) + 16, int(at.y()) + 16) or not card.geometry().contains(
            at
        )
    far = panel.view.sceneBoundingRect().topLeft() - QPointF(50, 50)
    assert panel.key_at(far) == ""
    panel._on_mouse_moved((far,))
    assert not card.isVisible()


def test_hover_card_and_tiles_say_file_patient_side_and_label(qtbot, make_state, settings, tmp_path) -> None:
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    from app.models.labels import LabelsState
    from inference.labels.store import LabelEdit

    settings.store_path = tmp_path / "labels.sqlite"
    state = opened(qtbot, make_state)
    labels = LabelsState(state)
    labels.set_annotator("dr-card")
    panel = panel_for(qtbot, state, labels)
    card = panel.hover
    pos = scene_pos(panel, "K0005")  # /nowhere/P1/5.dcm, patient P1, left CC
    panel._on_mouse_moved((pos,))
    text = card.text.text()
    assert card.isVisible() and "<b>5.dcm</b>" in text and "P1 · L CC" in text and "label: no label" in text
    assert labels.store is not None
    labels.store.set_labels(
        [LabelEdit("K0005", "malignancy", "malignant", 0.9, "confirmed", "person"),
         LabelEdit("K0005", "acr", "4", 0.8, "confirmed", "person")],
        annotator="dr-card", source="person", model_version="",
    )  # fmt: skip
    labels.labels_changed.emit(("K0005",))
    panel.hovered = ""
    panel._on_mouse_moved((pos,))
    assert "label: malignant, ACR 4" in card.text.text()
    QApplication.sendEvent(panel.plot.viewport(), QEvent(QEvent.Type.Leave))  # the mouse leaves the map
    assert not card.isVisible()

    strip = panel.similar
    state.files.set_current("K0002")
    near = strip.cases[0].key
    labels.store.set_labels(
        [LabelEdit(near, "malignancy", "benign", 1.0, "confirmed", "person")], annotator="dr-other", source="person",
        model_version="",
    )  # fmt: skip
    labels.labels_changed.emit((near,))  # the strip repaints from the explorer's colour_changed
    tiles = {t.key: t for t in strip.tiles if t.isVisible()}
    i = int(near[1:])
    side = f"{'RL'[i % 2]} {('CC', 'MLO')[(i // 2) % 2]}"
    assert tiles[near].lines[:3] == (f"{i}.dcm", f"P{i // 4} · {side}", "benign (dr-other)")  # another person's
    other = strip.cases[1].key
    i = int(other[1:])
    side = f"{'RL'[i % 2]} {('CC', 'MLO')[(i // 2) % 2]}"
    assert tiles[other].lines[:3] == (f"{i}.dcm", f"P{i // 4} · {side}", "no label")
    assert "label: no label" in tiles[other].toolTip()
    labels.close()
    wait_workers(qtbot, state)


def test_colour_modes_give_the_right_colours(qtbot, make_state) -> None:
    state = opened(qtbot, make_state)
    panel = panel_for(qtbot, state)
    ex = panel.explorer
    _, cluster = _z(60)
    row_cluster = {f"K{i:04d}": int(c) for i, c in enumerate(cluster)}

    panel.set_colour_mode("prediction:density")
    c = ex.colouring()
    assert c.kind == "category" and c.names == ("A", "B", "C", "D")
    assert [int(c.codes[ex.row(k)]) for k in ex.keys] == [row_cluster[k] for k in ex.keys]
    brushes = {
        str(k): b.color().name() for k, b in zip(panel.scatter.data["data"], panel.scatter.data["brush"], strict=False)
    }
    assert {brushes[k] for k in ex.keys if row_cluster[k] == 2} == {QColorName(CATEGORY_COLOURS[2])}

    panel.set_colour_mode("laterality")
    c = ex.colouring()
    assert c.names == ("L", "R") and {c.describe(ex.row("K0000")), c.describe(ex.row("K0001"))} == {"R", "L"}

    panel.set_colour_mode("prediction:malignancy")
    c = ex.colouring()
    assert c.kind == "value" and c.describe(ex.row("K0002")) == "0.900"
    drawn = [str(k) for k in panel.scatter.data["data"]]
    assert row_cluster[drawn[-1]] == 2  # the most suspicious are drawn last, on top

    panel.size_check.setChecked(True)
    sizes = {str(k): s for k, s in zip(panel.scatter.data["data"], panel.scatter.data["size"], strict=False)}
    assert sizes["K0002"] > sizes["K0001"] > sizes["K0000"]  # MC std grows with the cluster

    panel.set_colour_mode("view")
    assert ex.colouring().names == ("CC", "MLO")
    with pytest.raises(ValueError):
        panel.set_colour_mode("favourite colour")


def QColorName(text: str) -> str:  # noqa: N802 - mirrors QColor.name()
    from PySide6.QtGui import QColor

    return QColor(text).name()


def test_label_colours_and_correction_status(qtbot, make_state) -> None:
    state = opened(qtbot, make_state, n=12)
    store = FakeStore(
        [
            rec("K0000", "density", "A", "suggested", "import"),
            rec("K0000", "density", "B", "confirmed", "person"),  # corrected
            rec("K0001", "density", "C", "suggested", "import"),
            rec("K0001", "density", "C", "confirmed", "person"),  # confirmed
            rec("K0002", "density", "D", "suggested", "import"),  # unreviewed
        ]
    )
    labels = SimpleNamespace(store=store)
    panel = panel_for(qtbot, state, labels)
    ex = panel.explorer
    panel.set_colour_mode("label:density")
    c = ex.colouring()
    assert [c.describe(ex.row(k)) for k in ("K0000", "K0001", "K0002", "K0003")] == ["B", "C", "D", "unknown"]
    panel.set_colour_mode("original:density")
    c = ex.colouring()
    assert [c.describe(ex.row(k)) for k in ("K0000", "K0001", "K0002")] == ["A", "C", "D"]
    panel.set_colour_mode("status")
    c = ex.colouring()
    assert [c.describe(ex.row(k)) for k in ("K0000", "K0001", "K0002")] == ["corrected", "confirmed", "unreviewed"]
    assert "unknown" not in [e[1] for e in panel.legend.entries]
    assert QColorName(UNKNOWN_COLOUR) not in {b.color().name() for b in panel.scatter.data["brush"]}


def rec(key: str, task: str, value: str, status: str, source: str) -> Any:
    from inference.labels.store import LabelRecord

    return LabelRecord(
        key, "ann" if source == "person" else "dataset", task, value, 0.9, status, source, "", "2024-01-01T00:00:00Z"
    )


class FakeStore:
    def __init__(self, records: list[Any]) -> None:
        self.records = records

    def labels(self, key: str | None = None) -> list[Any]:
        return [r for r in self.records if key is None or r.key == key]


def test_similar_cases_are_the_cosine_neighbours_and_open_on_click(qtbot, make_state) -> None:
    state = opened(qtbot, make_state)
    panel = panel_for(qtbot, state)
    current = state.files.current_key
    assert current
    strip = panel.similar
    z = np.stack([state.runner.predictions[k].z for k in panel.explorer.keys])
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    i = panel.explorer.row(current)
    cos = u @ u[i]
    cos[i] = -np.inf
    expected = [panel.explorer.keys[j] for j in np.argsort(-cos, kind="stable")[: strip.k]]
    assert [n.key for n in strip.cases] == expected
    assert all(n.key != current for n in strip.cases)
    _, cluster = _z(60)
    assert {int(cluster[int(k[1:])]) for k in expected} == {int(cluster[int(current[1:])])}
    tile = strip.tiles[2]
    assert tile.isVisible() and tile.pixmap is not None and tile.lines[3].startswith(f"d {strip.cases[2].distance:.3f}")
    qtbot.mouseClick(tile, Qt.MouseButton.LeftButton)
    assert state.files.current_key == expected[2]
    assert expected[2] not in [n.key for n in strip.cases]  # the strip now shows the new image's neighbours
    wait_workers(qtbot, state)


def test_similar_strip_follows_the_colouring_by_itself(qtbot, make_state) -> None:
    """The strip repaints from the explorer state's colour_changed: no widget calls into it."""
    state = opened(qtbot, make_state)
    panel = panel_for(qtbot, state)
    strip, ex = panel.similar, panel.explorer
    for mode in ("laterality", "prediction:malignancy"):
        panel.set_colour_mode(mode)
        c = ex.colouring()
        shown = [(t.lines[4], t.accent.name()) for t in strip.tiles[: len(strip.cases)]]
        assert shown == [(c.describe(ex.row(n.key)), panel.accent_of(n.key).name()) for n in strip.cases]
    assert {t.lines[4] for t in strip.tiles[: len(strip.cases)]} <= {"0.100", "0.500", "0.900"}
    wait_workers(qtbot, state)


def test_umap_runs_in_the_worker_with_progress_and_cache(qtbot, make_state) -> None:
    state = opened(qtbot, make_state)
    panel = panel_for(qtbot, state)
    seen: list[tuple[str, int, int]] = []
    panel.explorer.busy_changed.connect(lambda *b: seen.append(b))
    panel.method.setCurrentIndex(panel.method.findData("umap"))
    panel.neighbours.setValue(8)
    with qtbot.waitSignal(panel.explorer.points_changed, timeout=120000):
        panel.compute_button.click()
    ex = panel.explorer
    assert ex.projection.params.method == "umap" and ex.projection.params.n_neighbors == 8
    assert any(t.startswith("UMAP of 60") and total for t, _, total in seen)
    assert not panel.progress.isVisible() and seen[-1] == ("", 0, 0)
    first = ex.xy.copy()
    ex.set_params(ProjectionParams())
    qtbot.waitUntil(lambda: ex.projection.params.method == "pca" and not state.pool.running(), timeout=30000)
    ex.set_params(ProjectionParams(method="umap", n_neighbors=8))
    qtbot.waitUntil(lambda: ex.projection.params.method == "umap" and not state.pool.running(), timeout=30000)
    assert ex.projection.from_cache and np.array_equal(ex.xy, first)


def test_embeddings_file_of_an_archive(qtbot, make_state, tmp_path) -> None:
    state = opened(qtbot, make_state, n=8)
    panel = panel_for(qtbot, state)
    z, _ = _z(200, seed=3)
    keys = tuple(f"A{i}" for i in range(200))
    path = write_embeddings(
        tmp_path / "archive.npz",
        Embeddings(
            keys,
            z,
            VERSION,
            tuple(f"/archive/{i}.dcm" for i in range(200)),
            {"laterality": tuple("LR"[i % 2] for i in range(200)), "view": ("CC",) * 200, "source": ("site-a",) * 200},
        ),
    )
    with qtbot.waitSignal(panel.explorer.points_changed, timeout=30000):
        panel.explorer.load_embeddings(path)
    ex = panel.explorer
    assert ex.source == "file" and ex.keys == keys and "archive.npz" in panel.source_label.text()
    panel.set_colour_mode("laterality")
    assert ex.colouring().describe(ex.row("A1")) == "R"
    panel.set_colour_mode("prediction:malignancy")  # archive images: the manifest's head applied to z
    logits = z @ HEAD_W.T
    p = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    np.testing.assert_allclose(ex.colouring().values, p, rtol=1e-4, atol=1e-6)
    panel.set_colour_mode("prediction:density")  # no head for density: unknown
    assert ex.colouring().describe(ex.row("A1")) == "unknown"
    messages: list[tuple[str, str]] = []
    state.activity.message.connect(lambda level, text: messages.append((level, text)))
    assert not ex.open("A3") and "/archive/3.dcm" in messages[-1][1] and state.files.current_key != "A3"
    panel._on_select("box", (-1e9, -1e9, 1e9, 1e9), False)
    assert len(ex.selected) == 200 and state.files.selection == ()  # archive images cannot be labelled here
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    ex.load_embeddings(bad)
    qtbot.waitUntil(lambda: bool(messages) and "bad.npz" in messages[-1][1], timeout=10000)
    assert ex.keys == keys  # the archive stays
    panel.opened_button.click()
    qtbot.waitUntil(lambda: ex.source == "opened" and len(ex.keys) == 8 and not state.pool.running(), timeout=30000)


def test_new_predictions_extend_the_pca_map(qtbot, make_state) -> None:
    state = make_state(backend=fake_backend(16))
    panel = ExplorerPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    assert "No image" in panel.placeholder.textItem.toPlainText()
    state.open_paths(["/nowhere"])
    qtbot.waitUntil(lambda: len(panel.explorer.keys) == 16 and not state.pool.running(), timeout=30000)
    assert panel.placeholder.textItem.toPlainText() == ""


def test_a_hidden_explorer_computes_nothing_and_too_few_points_are_said_plainly(qtbot, make_state) -> None:
    state = make_state(backend=fake_backend(4))
    messages: list[str] = []
    state.activity.message.connect(lambda _level, text: messages.append(text))
    panel = ExplorerPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    panel.method.setCurrentIndex(panel.method.findData("tsne"))
    panel.apply_params()
    panel.hide()  # the person hides the explorer, then opens a 4-image folder
    submitted: list[str] = []
    real_submit = state.pool.submit
    state.pool.submit = lambda *a, **k: (submitted.append(k.get("channel", "")), real_submit(*a, **k))[1]
    state.open_paths(["/nowhere"])
    qtbot.waitUntil(lambda: len(state.runner.predictions) == 4 and not state.pool.running(), timeout=30000)
    qtbot.wait(600)  # past the explorer's refresh timer
    assert "explorer" not in submitted and not panel.explorer.keys  # nothing projected while hidden
    assert not any("needs at least" in m for m in messages)  # and nothing said
    panel.show()  # shown: the map says plainly why it is empty, no error message
    note = "t-SNE needs at least 5 images; 4 have a prediction"
    qtbot.waitUntil(lambda: note in panel.placeholder.textItem.toPlainText())
    assert not any("needs at least" in m for m in messages)
    qtbot.wait(50)
    assert panel.view.sceneBoundingRect().contains(panel.placeholder.sceneBoundingRect())  # not cut off
    panel.method.setCurrentIndex(panel.method.findData("pca"))  # PCA places them
    qtbot.waitUntil(lambda: len(panel.explorer.keys) == 4 and not state.pool.running(), timeout=30000)
    assert panel.placeholder.textItem.toPlainText() == ""


def test_explorer_state_without_panel_reports_bad_parameters(make_state) -> None:
    state = make_state(backend=fake_backend(4))
    ex = ExplorerState(state)
    with pytest.raises(ValueError):
        ex.set_colour_mode("nope")
    assert ex.similar("missing") == ()


def test_archive_thumbnails_are_read_in_the_background(qtbot, make_state, tmp_path) -> None:
    from PIL import Image

    state = opened(qtbot, make_state, n=8)
    panel = panel_for(qtbot, state)
    files = []
    for i in range(3):  # breast-like blobs on black, 8-bit PNG
        yy, xx = np.mgrid[0:300, 0:220]
        img = np.where((yy - 150) ** 2 / 140**2 + xx**2 / (150 + 10 * i) ** 2 < 1, 180 - xx // 2, 0).astype(np.uint8)
        files.append(tmp_path / f"img{i}.png")
        Image.fromarray(img).save(files[-1])
    z, _ = _z(len(files) + 10, seed=5)
    keys = tuple(f"F{i}" for i in range(len(z)))
    paths = tuple(str(files[i]) if i < len(files) else str(tmp_path / "gone.dcm") for i in range(len(z)))
    # another model's archive: the opened image has no similar cases there, so nothing else asks for previews
    path = write_embeddings(tmp_path / "a.npz", Embeddings(keys, z, "other-model", paths))
    with qtbot.waitSignal(panel.explorer.points_changed, timeout=30000):
        panel.explorer.load_embeddings(path)
    assert panel.similar.cases == ()
    assert panel.thumbnails.get("F0") is None  # not in memory: read from the file
    with qtbot.waitSignal(panel.thumbnails.ready, timeout=30000, check_params_cb=lambda k: k == "F0"):
        pass
    pm = panel.thumbnails.get("F0")
    assert pm is not None and pm.height() == 96 and pm.width() > 20
    assert panel.thumbnails.get(keys[-1]) is None  # a file that no longer exists: no preview, no error
    qtbot.waitUntil(lambda: keys[-1] in panel.thumbnails._failed and not state.pool.running(), timeout=30000)
    assert panel.thumbnails.get(keys[-1]) is None


def test_with_the_real_label_store_colours_follow_accepted_labels(qtbot, make_state, settings, tmp_path) -> None:
    from app.models.labels import LabelsState
    from inference.labels.store import LabelEdit

    settings.store_path = tmp_path / "labels.sqlite"
    settings.annotator = "dr-a"
    state = opened(qtbot, make_state, n=12)
    labels = LabelsState(state)
    panel = panel_for(qtbot, state, labels)
    panel.set_colour_mode("label:density")
    ex = panel.explorer
    assert ex.colouring().describe(ex.row("K0004")) == "unknown"
    labels.store.set_labels([LabelEdit("K0004", "density", "D", 0.9)], annotator="dr-a")
    labels.labels_changed.emit(("K0004",))  # what LabelsState.accept() emits after saving
    assert ex.colouring().describe(ex.row("K0004")) == "D"
    panel.set_colour_mode("status")
    assert ex.colouring().describe(ex.row("K0004")) == "confirmed"
    labels.close()


def test_previews_of_predictions_whose_maps_were_let_go_come_from_the_cache(qtbot, make_state, monkeypatch) -> None:
    import app.models.images

    monkeypatch.setattr(app.models.images, "MAPS_MEMORY", 4)
    state = opened(qtbot, make_state, n=40)
    panel = panel_for(qtbot, state)
    wait_workers(qtbot, state)  # the similar strip's previews
    shown = {n.key for n in panel.similar.cases}
    slim = [
        k
        for k, p in state.runner.predictions.items()
        if not isinstance(p, Prediction) and k not in shown and state.memory.image(k) is None
    ]
    assert slim
    key = slim[0]
    with qtbot.waitSignal(panel.thumbnails.ready, timeout=30000, check_params_cb=lambda k: k == key):
        assert panel.thumbnails.get(key) is None
    pm = panel.thumbnails.get(key)
    assert pm is not None and pm.height() == 96
    wait_workers(qtbot, state)
