"""The predictions of the current image, its breast and its exam, and the malignancy operating point.

Every task's probabilities as labelled bars (ACR categories and densities with their meaning), the
Monte-Carlo dropout uncertainty, and flags where the model's view disagrees with the file's or the
laterality seen in the pixels disagrees with the tag. Research use only, not for diagnosis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QScrollArea,
    QSlider,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.models.state import AppState
from app.widgets.browser import side_and_view
from inference.errors import ManifestError
from inference.formats import ModelManifest
from inference.model.summary import BreastSummary, ExamSummary

__all__ = ["PredictionsPanel", "ProbabilityBars", "ACR_MEANING", "DENSITY_MEANING", "operating_points"]

ACR_MEANING = {
    "1": "negative",
    "2": "benign",
    "3": "probably benign",
    "4": "suspicious",
    "5": "highly suggestive of malignancy",
    "6": "known biopsy-proven malignancy",
}
DENSITY_MEANING = {
    "A": "almost entirely fatty",
    "B": "scattered fibroglandular",
    "C": "heterogeneously dense",
    "D": "extremely dense",
}
VIEW_MEANING = {"CC": "cranio-caudal", "MLO": "medio-lateral oblique"}
_MEANINGS = {"acr": ACR_MEANING, "density": DENSITY_MEANING, "view": VIEW_MEANING, "malignancy": {}}
_TITLES = {
    "malignancy": "Malignancy",
    "acr": "ACR category (BI-RADS assessment)",
    "density": "BI-RADS density",
    "view": "View",
}
_BAR_STYLE = (
    "QProgressBar { border: 1px solid #3a3a3a; border-radius: 2px; background: #1b1b1b; color: #e8e8e8;"
    " text-align: right; padding-right: 4px; max-height: 15px; }"
    "QProgressBar::chunk { background: %s; }"
)
_FLAG_STYLE = "color: #ff6b6b; font-weight: bold;"
_OK_STYLE = "color: #9ad29a;"
_NOTE_STYLE = "color: #bbbbbb;"


def operating_points(manifest: ModelManifest | None) -> list[tuple[str, float]]:
    """Named malignancy thresholds of a model: 0.5 first, then the manifest's (95 % sensitivity ...)."""
    out = [("0.5 (default)", 0.5)]
    if manifest is None:
        return out
    try:
        out[0] = (f"{manifest.threshold('default'):.3g} (default)", manifest.threshold("default"))
    except ManifestError:
        pass
    points = manifest.operating_points.get("malignancy", manifest.operating_points)
    names = list(points) if isinstance(points, Mapping) else []
    titles = {"sensitivity_95": "95 % sensitivity", "youden": "Youden", "specificity_95": "95 % specificity"}
    for name in ["sensitivity_95"] + [n for n in names if n not in ("sensitivity_95", "default")]:
        try:
            t = manifest.threshold(name)
        except (ManifestError, TypeError, ValueError):
            continue
        out.append((f"{titles.get(name, name)} ({t:.3g})", t))
    return out


class ProbabilityBars(QWidget):
    """One labelled bar per class: "4  suspicious  [=====    ] 41.0 %"."""

    def __init__(self, task: str, classes: Sequence[str] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.task = task
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setVerticalSpacing(2)
        self.bars: dict[str, QProgressBar] = {}
        self._classes: tuple[str, ...] = ()
        self.set_classes(classes)

    def set_classes(self, classes: Sequence[str]) -> None:
        classes = tuple(classes)
        if classes == self._classes:
            return
        while self.grid.count():
            item = self.grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.bars = {}
        self._classes = classes
        meaning = _MEANINGS.get(self.task, {})
        for i, c in enumerate(classes):
            name = QLabel(f"<b>{c}</b>")
            name.setMinimumWidth(28)
            desc = QLabel(meaning.get(c, ""))
            desc.setStyleSheet("color: #b8b8b8;")
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            bar.setMinimumWidth(90)
            bar.setStyleSheet(_BAR_STYLE % "#4f7fbf")
            self.grid.addWidget(name, i, 0)
            self.grid.addWidget(desc, i, 1)
            self.grid.addWidget(bar, i, 2)
            self.bars[c] = bar
        self.grid.setColumnStretch(2, 1)

    def set_values(self, probs: Sequence[float] | None) -> None:
        top = int(np.argmax(probs)) if probs else -1
        for i, bar in enumerate(self.bars.values()):
            if probs is None or i >= len(probs):
                bar.setValue(0)
                bar.setFormat("–")
                continue
            bar.setValue(int(round(float(probs[i]) * 1000)))
            bar.setFormat(f"{probs[i] * 100:.1f} %")
            bar.setStyleSheet(_BAR_STYLE % ("#d9a53f" if i == top else "#4f7fbf"))

    def values(self) -> dict[str, float]:
        return {c: b.value() / 1000 for c, b in self.bars.items()}


class PredictionsPanel(QScrollArea):
    """Renders the state's predictions for the current image; the operating point goes back as a request."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setWidgetResizable(True)
        body = QWidget()
        self.setWidget(body)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)

        self.title = QLabel("No image")
        self.title.setStyleSheet("font-size: 13pt; font-weight: bold;")
        self.title.setWordWrap(True)
        lay.addWidget(self.title)
        self.notice = QLabel("Research use only, not for diagnosis.")
        self.notice.setStyleSheet("color: #ffb347;")
        lay.addWidget(self.notice)

        # malignancy + operating point
        mal_box = QGroupBox("Malignancy (image)")
        ml = QVBoxLayout(mal_box)
        self.p_label = QLabel("–")
        self.p_label.setStyleSheet("font-size: 15pt;")
        self.p_bar = QProgressBar()
        self.p_bar.setRange(0, 1000)
        self.p_bar.setStyleSheet(_BAR_STYLE % "#4f7fbf")
        self.flag_label = QLabel("")
        ml.addWidget(self.p_label)
        ml.addWidget(self.p_bar)
        ml.addWidget(self.flag_label)
        op_row = QHBoxLayout()
        op_row.addWidget(QLabel("Operating point"))
        self.op_slider = QSlider(Qt.Orientation.Horizontal)
        self.op_slider.setRange(0, 1000)
        self.op_spin = QDoubleSpinBox()
        self.op_spin.setRange(0.0, 1.0)
        self.op_spin.setDecimals(3)
        self.op_spin.setSingleStep(0.01)
        op_row.addWidget(self.op_slider, 1)
        op_row.addWidget(self.op_spin)
        ml.addLayout(op_row)
        self.op_presets = QComboBox()
        self.op_presets.setToolTip("Operating points from the model manifest")
        ml.addWidget(self.op_presets)
        lay.addWidget(mal_box)

        self.task_boxes: dict[str, tuple[QGroupBox, ProbabilityBars]] = {}
        for task in ("acr", "density", "view"):
            box = QGroupBox(_TITLES[task])
            bl = QVBoxLayout(box)
            bars = ProbabilityBars(task)
            bl.addWidget(bars)
            lay.addWidget(box)
            self.task_boxes[task] = (box, bars)
        self.view_flag = QLabel("")
        # the model and the file disagree on the view: an icon with the details in its tooltip, not a
        # red line (the model's view is a suggestion; the file's view hangs the image)
        self.view_icon = QLabel()
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation)
        self.view_icon.setPixmap(icon.pixmap(16, 16))
        self.view_icon.hide()
        self.lat_flag = QLabel("")
        view_box = self.task_boxes["view"][0].layout()
        assert view_box is not None  # every task box was given its layout above
        view_row = QHBoxLayout()
        view_row.addWidget(self.view_icon)
        view_row.addWidget(self.view_flag, 1)
        view_box.addLayout(view_row)  # type: ignore[attr-defined]  # a QVBoxLayout, typed as QLayout
        view_box.addWidget(self.lat_flag)

        sums = QGroupBox("Breast and exam (highest view wins)")
        self.summary_form = QFormLayout(sums)
        self.breast_label = QLabel("–")
        self.exam_label = QLabel("–")
        for w in (self.breast_label, self.exam_label):
            w.setWordWrap(True)
            w.setTextFormat(Qt.TextFormat.RichText)
        self.summary_form.addRow("Breast", self.breast_label)
        self.summary_form.addRow("Exam", self.exam_label)
        lay.addWidget(sums)
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.model_label.setStyleSheet("color: #9a9a9a;")
        lay.addWidget(self.model_label)
        lay.addStretch(1)

        self.op_slider.valueChanged.connect(lambda v: self.state.runner.set_operating_point(v / 1000))
        self.op_spin.valueChanged.connect(self.state.runner.set_operating_point)
        self.op_presets.activated.connect(self._on_preset)
        s = state
        s.files.current_changed.connect(lambda _k: self.refresh())
        s.runner.predictions_changed.connect(self._on_predictions)
        s.runner.model_changed.connect(self._on_model_changed)
        s.runner.operating_point_changed.connect(lambda _t: self.refresh())
        s.memory.images_changed.connect(lambda keys: self.refresh() if self.state.files.current_key in keys else None)
        self._on_model_changed()

    def _on_predictions(self, keys: tuple[str, ...]) -> None:
        """The panel shows the current image, its breast and its exam: another study's prediction
        changes none of them (70 images opened would repaint it 70 times)."""
        if not self.state.files.current_study_keys().isdisjoint(keys):
            self.refresh()

    # ------------------------------------------------------------------ requests
    def _on_preset(self, index: int) -> None:
        value = self.op_presets.itemData(index)
        if value is not None:
            self.state.runner.set_operating_point(float(value))

    # ------------------------------------------------------------------ rendering
    def _on_model_changed(self) -> None:
        m = self.state.runner.manifest
        self.op_presets.clear()
        for title, t in operating_points(m):
            self.op_presets.addItem(title, t)
        if m is not None:
            for task, (box, bars) in self.task_boxes.items():
                bars.set_classes(m.tasks.get(task, ()))
                box.setVisible(task in m.tasks)
            dev = getattr(self.state.runner.session, "device", "?")
            self.model_label.setText(f"Model {m.name} {m.version} on {dev}. {m.intended_use}")
        elif self.state.runner.model_error:
            self.model_label.setText(f"<span style='color:#ff6b6b'>{self.state.runner.model_error}</span>")
        else:
            self.model_label.setText("Model not loaded yet")
        self.refresh()

    def refresh(self) -> None:
        s = self.state
        t = s.runner.operating_point
        for w in (self.op_slider, self.op_spin):
            w.blockSignals(True)
        self.op_slider.setValue(int(round(t * 1000)))
        self.op_spin.setValue(t)
        for w in (self.op_slider, self.op_spin):
            w.blockSignals(False)
        key = s.files.current_key
        rec = s.files.current_record
        if key is None or rec is None:
            self.title.setText("No image")
            self._clear()
            return
        self.title.setText(f"{side_and_view(s, key)}  ·  {rec.patient_id or rec.path.name}")
        self.title.setToolTip(str(rec.path))
        pred = s.runner.prediction(key)
        problem = s.files.load_problems.get(key)
        if pred is None:
            self._clear("cannot be predicted: " + problem.reason if problem else "waiting for the model…")
            self._summaries(key)
            return
        p, std, mc = pred.p_malignant, pred.p_malignant_std, pred.p_malignant_mc_mean
        self.p_label.setText(f"P(malignant) {p:.3f} ± {std:.3f}" if std == std else f"P(malignant) {p:.3f}")
        self.p_label.setToolTip(f"Monte-Carlo dropout: mean {mc:.3f}, std {std:.3f}")
        self.p_bar.setValue(int(round(p * 1000)) if p == p else 0)
        self.p_bar.setFormat(f"{p * 100:.1f} %")
        flagged = s.runner.flagged(key)
        self.p_bar.setStyleSheet(_BAR_STYLE % ("#d9534f" if flagged else "#4f7fbf"))
        if flagged:
            self.flag_label.setText(f"▲ Above the operating point ({t:.3f})")
            self.flag_label.setStyleSheet(_FLAG_STYLE)
        else:
            self.flag_label.setText(f"Below the operating point ({t:.3f})")
            self.flag_label.setStyleSheet(_OK_STYLE)
        for task, (_box, bars) in self.task_boxes.items():
            bars.set_values(pred.probabilities.get(task))
        # model view vs the file's view
        view_probs = pred.probabilities.get("view")
        mview = ""
        if view_probs and s.runner.manifest is not None:
            mview = s.runner.manifest.tasks["view"][int(np.argmax(view_probs))]
        tip = ""
        if mview and rec.model_view and mview != rec.model_view:
            self.view_flag.setText(f"Model view {mview} · file {rec.view}")
            self.view_flag.setStyleSheet(_NOTE_STYLE)
            where = "the DICOM header" if rec.view_source == "tag" else "the file's text or name"
            p_view = max(view_probs or (0.0,))
            tip = (
                f"The model sees {mview} ({p_view:.0%}); the file says {rec.view} (from {where}).\n"
                "The file's view hangs the image; the model's is only a suggestion. "
                "Confirm or correct the view in the Labels panel."
            )
        elif mview:
            src = f"the file says {rec.view}" if rec.model_view else "the file names no view"
            self.view_flag.setText(f"Model view {mview}; {src}")
            self.view_flag.setStyleSheet(_OK_STYLE if rec.model_view else "")
        else:
            self.view_flag.setText("")
        self.view_icon.setVisible(bool(tip))
        self.view_icon.setToolTip(tip)
        self.view_flag.setToolTip(tip)
        pix = s.files.pixel_laterality.get(key, "")
        if rec.laterality and pix and pix != rec.laterality:
            self.lat_flag.setText(
                f"⚠ The pixels look like a {pix} breast; the {rec.laterality_source} says {rec.laterality}"
            )
            self.lat_flag.setStyleSheet(_FLAG_STYLE)
        elif pix and not rec.laterality:
            self.lat_flag.setText(f"Laterality {pix} from the pixels (no tag)")
            self.lat_flag.setStyleSheet("")
        else:
            self.lat_flag.setText("")
        self._summaries(key)

    def _summaries(self, key: str) -> None:
        s = self.state
        b = s.runner.breast_of(key)
        e = s.runner.exam_of(key)
        self.breast_label.setText(self._summary_text(b) if b is not None else "–")
        self.exam_label.setText(self._summary_text(e) if e is not None else "–")

    def _summary_text(self, summ: BreastSummary | ExamSummary) -> str:
        s = self.state
        p = float(summ.p_malignant)
        std = float(summ.p_malignant_std)
        src = summ.source_key
        try:
            where = side_and_view(s, src)
        except KeyError:
            where = "?"
        flagged = p == p and p >= s.runner.operating_point
        colour = "#ff6b6b" if flagged else "#e8e8e8"
        acr = summ.acr
        dens = summ.density
        parts = [f"<span style='color:{colour}'><b>P {p:.3f}</b>" + (f" ± {std:.3f}" if std == std else "") + "</span>"]
        parts.append(f"from {where}")
        if acr:
            top = int(np.argmax(acr))
            parts.append(f"ACR {top + 1} ({acr[top] * 100:.0f} %)")
        if dens:
            top = int(np.argmax(dens))
            parts.append(f"density {'ABCD'[top] if top < 4 else top} ({dens[top] * 100:.0f} %)")
        return " · ".join(parts)

    def _clear(self, why: str = "") -> None:
        self.p_label.setText(why or "–")
        self.p_bar.setValue(0)
        self.p_bar.setFormat("–")
        self.flag_label.setText("")
        for _box, bars in self.task_boxes.values():
            bars.set_values(None)
        self.view_flag.setText("")
        self.view_flag.setToolTip("")
        self.view_icon.hide()
        self.lat_flag.setText("")
        self.breast_label.setText("–")
        self.exam_label.setText("–")
