"""The main window: the hanging in the centre, panels in docks, menus, toolbar and status bar.

Wiring only: widgets render :class:`AppState` and call its requests. Other panels join with one
call each in :meth:`MainWindow._build_panels` (``self.add_panel(name, widget, area, shortcut)``).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
    QPalette,
)
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMenu,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolBar,
    QWidget,
)

from app.models.labels import LabelsState
from app.models.settings import Settings
from app.models.state import AppState
from app.widgets.browser import ProblemsPanel, StudyBrowser
from app.widgets.dialogs import RESEARCH_NOTICE, AboutDialog, SettingsDialog, ShortcutsDialog
from app.widgets.explorer import ExplorerPanel
from app.widgets.image_view import PRESETS
from app.widgets.label_panel import LabelPanel
from app.widgets.overlays import OverlayControls
from app.widgets.pacs_dialog import open_pacs_dialog  # issue 17
from app.widgets.predictions_panel import PredictionsPanel
from app.widgets.queue_panel import QueuePanel
from app.widgets.viewer import HangingViewer

__all__ = ["MainWindow", "apply_dark_theme", "samples_path", "EXPLORER_SHARE"]

#: The share of the window's height the latent-space explorer opens at (the viewer keeps the rest).
EXPLORER_SHARE = 0.38


def samples_path() -> Path:
    """The bundled sample studies (``resources/samples``)."""
    return Path(str(importlib.resources.files("resources") / "samples"))


def apply_dark_theme(app: QApplication) -> None:
    """A dark, low-glare palette suited to reading rooms."""
    app.setStyle("Fusion")
    pal = QPalette()
    base, window, text = QColor(24, 24, 24), QColor(34, 34, 34), QColor(222, 222, 222)
    for role, colour in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, QColor(30, 30, 30)),
        (QPalette.ColorRole.ToolTipBase, QColor(45, 45, 45)),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, QColor(44, 44, 44)),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.Highlight, QColor(70, 100, 150)),
        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
        (QPalette.ColorRole.PlaceholderText, QColor(130, 130, 130)),
    ):
        pal.setColor(role, colour)
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(110, 110, 110))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(110, 110, 110))
    app.setPalette(pal)


def _scrolling(widget: QWidget) -> QScrollArea:
    """A tall panel inside a scroll area, so it never forces the window's minimum height."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(widget)
    area.setFocusProxy(widget)
    return area


class MainWindow(QMainWindow):
    """Builds the window around one :class:`AppState`."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.settings: Settings = state.settings
        self.setWindowTitle("mammo-review — research use only, not for diagnosis")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.viewer = HangingViewer(state, self)
        self.setCentralWidget(self.viewer)
        self.panels: dict[str, QDockWidget] = {}
        self.shortcut_rows: list[tuple[str, str]] = []
        self._build_menus()
        self._build_toolbar()
        self._build_status()
        self._build_panels()
        s = state
        s.activity.busy_changed.connect(self._on_busy)
        s.activity.message.connect(self._on_message)
        s.runner.model_changed.connect(self._on_model_changed)
        s.display.overlay_changed.connect(self._render_overlay_controls)
        s.runner.predictions_changed.connect(lambda _k: self._render_overlay_controls())
        s.files.current_changed.connect(self._on_current_changed)
        s.display.display_changed.connect(self._render_display_controls)
        s.memory.images_changed.connect(
            lambda keys: self._on_current_changed(s.files.current_key or "") if s.files.current_key in keys else None
        )
        self.resize(1600, 1000)
        geometry = self.settings.window_geometry
        if not geometry.isEmpty():
            self.restoreGeometry(geometry)
        state_bytes = self.settings.window_state
        if not state_bytes.isEmpty():
            self.restoreState(state_bytes)
        self._render_overlay_controls()
        self._render_display_controls()

    # ------------------------------------------------------------------ panels
    def add_panel(
        self,
        name: str,
        widget: QWidget,
        area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea,
        shortcut: str | None = None,
    ) -> QDockWidget:
        """Dock ``widget`` under ``name``; View ▸ Panels gets a toggle (with ``shortcut``)."""
        dock = QDockWidget(name, self)
        dock.setObjectName(f"panel:{name}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        toggle = dock.toggleViewAction()
        if shortcut:
            toggle.setShortcut(QKeySequence(shortcut))
            self.shortcut_rows.append((shortcut, f"Show or hide the {name} panel"))
        self.panels_menu.addAction(toggle)
        self.panels[name] = dock
        return dock

    def _build_panels(self) -> None:
        self.browser = StudyBrowser(self.state)
        self.problems = ProblemsPanel(self.state)
        self.predictions = PredictionsPanel(self.state)
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        self.add_panel("Studies", self.browser, left, "Ctrl+1")
        self.add_panel("Problems", self.problems, left, "Ctrl+2")
        self._problems_told = 0  # unreadable files the status bar has told of (for this opened set)
        self.state.files.problems_changed.connect(self._on_problems_changed)
        self.add_panel("Predictions", self.predictions, Qt.DockWidgetArea.RightDockWidgetArea, "Ctrl+3")
        # Labels: the label panel for the current image or selection, the review queue, export/import.
        self.labels = LabelsState(self.state, parent=self)
        self.label_panel = LabelPanel(self.labels)
        self.add_panel("Labels", _scrolling(self.label_panel), Qt.DockWidgetArea.RightDockWidgetArea, "Ctrl+4")
        self.queue = QueuePanel(self.labels)
        self.add_panel("Review queue", self.queue, left, "Ctrl+5")
        self.tabifyDockWidget(self.panels["Studies"], self.panels["Review queue"])
        self.tabifyDockWidget(self.panels["Predictions"], self.panels["Labels"])
        self.panels["Studies"].raise_()
        self.panels["Predictions"].raise_()
        self.shortcut_rows.append(("L", "label this image (then 1-6 / 0, [ ], Enter)"))
        # The latent-space explorer of the 496-d embeddings, linked to the viewer and the labels.
        self.explorer = ExplorerPanel(self.state, self.labels)
        # Wide and tall: it lives below the viewer and opens on demand (Ctrl+6, View > Panels).
        # It sits under the viewer only (the side panels keep their height), in a scroll area so its
        # minimum height never squeezes the viewer; it opens at EXPLORER_SHARE of the window's height.
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        bottom = Qt.DockWidgetArea.BottomDockWidgetArea
        dock = self.add_panel("Latent space", _scrolling(self.explorer), bottom, "Ctrl+6")
        dock.hide()  # hidden, it computes nothing (ExplorerState.set_active)
        dock.visibilityChanged.connect(self._on_explorer_shown)
        self.explorer.load_action.triggered.connect(lambda _c=False: self.panels["Latent space"].show())
        # The panels' file actions go into File, after the ways to open and before Recent.
        for act in (
            self.queue.export_action,
            self.queue.import_action,
            self.queue.models_action,
            self.explorer.load_action,
        ):
            self.file_menu.insertAction(self.recent_menu.menuAction(), act)
        self.splitDockWidget(self.panels["Studies"], self.panels["Problems"], Qt.Orientation.Vertical)
        self.resizeDocks([self.panels["Studies"], self.panels["Predictions"]], [330, 380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.panels["Studies"], self.panels["Problems"]], [640, 200], Qt.Orientation.Vertical)
        self.resizeDocks([self.panels["Latent space"]], [360], Qt.Orientation.Vertical)

    def _on_explorer_shown(self, visible: bool) -> None:
        """A newly shown explorer dock takes EXPLORER_SHARE of the height, not what its contents ask."""
        dock = self.panels["Latent space"]
        if visible and not dock.isFloating() and dock.height() > EXPLORER_SHARE * self.height() * 1.25:
            self.resizeDocks([dock], [int(EXPLORER_SHARE * self.height())], Qt.Orientation.Vertical)

    # ------------------------------------------------------------------ actions
    def _action(
        self, menu: QMenu, text: str, slot: Callable[[], object], keys: str | list[str] | None = None, what: str = ""
    ) -> QAction:
        act = QAction(text, self)
        if keys:
            seqs = [keys] if isinstance(keys, str) else keys
            act.setShortcuts([QKeySequence(k) for k in seqs])
            self.shortcut_rows.append((", ".join(seqs), what or text.replace("&", "").rstrip("…")))
        act.triggered.connect(lambda _checked=False: slot())
        menu.addAction(act)
        self.addAction(act)
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        f = self.file_menu = bar.addMenu("&File")
        self._action(f, "Open &folder…", self.open_folder_dialog, "Ctrl+O")
        self._action(f, "Open f&iles…", self.open_files_dialog, "Ctrl+Shift+O")
        self._action(f, "Open the &sample studies", lambda: self.state.open_paths([samples_path()]))
        self._action(f, "Open from &PACS…", lambda: open_pacs_dialog(self, self.state))  # issue 17
        self.recent_menu = f.addMenu("&Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        f.addSeparator()
        self._action(f, "&Settings…", self.settings_dialog, "Ctrl+,")
        self._action(f, "&Quit", self.close, "Ctrl+Q")

        v = bar.addMenu("&View")
        group = QActionGroup(self)
        self.layout_actions: dict[str, QAction] = {}
        for key, (text, sc) in {
            "hanging": ("&4 views", "1"),
            "cc": ("&CC pair", "2"),
            "mlo": ("&MLO pair", "3"),
            "single": ("&1 image", "4"),
        }.items():
            act = self._action(
                v, text, partial(self.state.display.set_view, layout=key), sc, f"Layout: {text.replace('&', '')}"
            )
            act.setToolTip(
                {
                    "hanging": "R-CC and L-CC above R-MLO and L-MLO",
                    "cc": "The CC pair",
                    "mlo": "The MLO pair",
                    "single": "The current image alone",
                }[key]
            )
            act.setCheckable(True)
            group.addAction(act)
            self.layout_actions[key] = act
        v.addSeparator()
        self.act_evidence = self._action(
            v, "Malignancy &evidence overlay", lambda: self.state.display.toggle_overlay("evidence"), "E"
        )
        self.act_error = self._action(
            v, "Reconstruction e&rror overlay", lambda: self.state.display.toggle_overlay("error"), "R"
        )
        self.act_lesion = self._action(
            v,
            "Le&sion probability overlay",
            lambda: self.state.display.toggle_overlay("lesion"),
            "S",
            "Lesion probability overlay (models with a lesion output)",
        )
        self.act_recon = self._action(
            v,
            "Reconstruction &beside",
            lambda: self.state.display.set_overlay(reconstruction=not self.state.display.overlay.reconstruction),
            "B",
        )
        for act in (self.act_evidence, self.act_error, self.act_lesion, self.act_recon):
            act.setCheckable(True)
        v.addSeparator()
        self.act_invert = self._action(
            v, "&Invert", lambda: self.state.display.set_view(inverted=not self.state.display.view.inverted), "I"
        )
        self.act_invert.setCheckable(True)
        self.act_magnifier = self._action(
            v, "&Magnifier", lambda: self.state.display.set_view(magnifier=not self.state.display.view.magnifier), "M"
        )
        self.act_magnifier.setCheckable(True)
        self._action(v, "Next window &preset", self._next_preset, "W")
        self.act_lock_window = self._action(
            v,
            "&Lock the window/level across studies",
            lambda: self.state.display.set_window_locked(not self.state.display.view.window_locked),
            "Shift+W",
            "Lock the window/level: keep it when moving to another study",
        )
        self.act_lock_window.setCheckable(True)
        self.act_lock_window.setIconText("Lock W/L")
        self.act_lock_window.setToolTip(
            "Keep this window/level for every study (off: each study starts at its files' own windows)"
        )
        self._action(v, "Re&set zoom, pan and window", self.reset_view, ["0", "Home"])
        v.addSeparator()
        self.panels_menu = v.addMenu("&Panels")

        g = bar.addMenu("&Go")
        self._action(g, "&Next image", lambda: self.state.files.step_image(1), ["N", "PgDown"])
        self._action(g, "&Previous image", lambda: self.state.files.step_image(-1), ["P", "PgUp"])
        self._action(g, "Next &study", lambda: self.state.files.step_study(1), ["]", "Ctrl+PgDown"])
        self._action(g, "Previous s&tudy", lambda: self.state.files.step_study(-1), ["[", "Ctrl+PgUp"])
        g.addSeparator()
        self._action(g, "&Run the model again on missing predictions", self.state.runner.run_inference, "F5")
        self._action(g, "&Cancel the model run", self.state.cancel, "Esc")

        h = bar.addMenu("&Help")
        self._action(h, "&Keyboard shortcuts", self.shortcuts_dialog, "F1")
        self._action(h, "&About (research use only)", self.about_dialog)

    def _build_toolbar(self) -> None:
        tb = QToolBar("Display", self)
        tb.setObjectName("toolbar:display")
        tb.setMovable(False)
        self.addToolBar(tb)
        for key in ("hanging", "cc", "mlo", "single"):
            tb.addAction(self.layout_actions[key])
        tb.addSeparator()
        tb.addWidget(QLabel(" Window "))
        self.preset_combo = QComboBox()
        self.preset_combo.setMinimumWidth(200)
        self.preset_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.preset_combo.setToolTip("Window presets: the file's windows and a few standard ones (W cycles)")
        self.preset_combo.activated.connect(lambda i: self.state.display.set_view(preset=self.preset_combo.itemData(i)))
        tb.addWidget(self.preset_combo)
        tb.addAction(self.act_invert)
        tb.addAction(self.act_magnifier)
        tb.addAction(self.act_lock_window)
        reset = QAction("Reset", self)
        reset.triggered.connect(self.reset_view)
        tb.addAction(reset)
        tb.addSeparator()
        self.overlay_controls = OverlayControls()
        self.overlay_controls.kind_requested.connect(lambda k: self.state.display.set_overlay(kind=k))
        self.overlay_controls.opacity_requested.connect(lambda o: self.state.display.set_overlay(opacity=o))
        tb.addWidget(self.overlay_controls)
        tb.addAction(self.act_recon)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.notice_label = QLabel(f"  ⚠ {RESEARCH_NOTICE}  ")
        self.notice_label.setStyleSheet("color: #1a1a1a; background: #ffb347; font-weight: bold; padding: 2px;")
        self.message_label = QLabel("")
        # a long message is cut at the window's edge rather than squeezing the progress bar
        self.message_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.device_label = QLabel("model: not loaded")
        self.progress = QProgressBar()
        self._progress_sized: tuple[str, int] = ("", -1)  # the (task, total) the bar was last sized for
        self._busy: tuple[str, int, int] = ("", 0, 0)  # the latest (task, done, total)
        self._busy_shown = ""  # the task the bar shows
        self._busy_timer = QTimer(self)
        self._busy_timer.setSingleShot(True)
        self._busy_timer.setInterval(100)
        self._busy_timer.timeout.connect(self._show_busy)
        self.progress.setMaximumWidth(260)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the model run (Esc); predictions made so far are kept")
        self.cancel_button.clicked.connect(self.state.cancel)
        self.cancel_button.hide()
        sb.addWidget(self.notice_label)
        sb.addWidget(self.message_label, 1)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_button)
        sb.addPermanentWidget(self.device_label)

    # ------------------------------------------------------------------ state -> screen
    def _on_busy(self, task: str, done: int, total: int) -> None:
        """A new task (or the end of one) shows at once; a task's progress at most every 100 ms: the bar
        repaints itself on each value, which costs more than predicting an image."""
        self._busy = (task, done, total)
        if task != self._busy_shown:
            self._show_busy()
        elif not self._busy_timer.isActive():
            self._busy_timer.start()

    def _show_busy(self) -> None:
        self._busy_timer.stop()
        task, done, total = self._busy
        self._busy_shown = task
        busy = bool(task)
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            text = f"{task} {done}/{total}" if total else task
            self.progress.setRange(0, max(total, 0))
            self.progress.setValue(done)
            self.progress.setFormat(text)
            if (task, total) != self._progress_sized:  # a new width lays the status bar out again: once a task
                self._progress_sized = (task, total)
                # wide enough for its text on one line ("Running the model 21/70", never cut or wrapped)
                need = self.progress.fontMetrics().horizontalAdvance(f"{task} {total}/{total}") + 40
                self.progress.setMinimumWidth(min(need, 480))
                self.progress.setMaximumWidth(max(need, 260))

    def _on_message(self, level: str, text: str) -> None:
        colour = {"error": "#ff6b6b", "warning": "#ffb347"}.get(level, "#d0d0d0")
        self.message_label.setStyleSheet(f"color: {colour};")
        first = text.splitlines()[0] if text else ""
        self.message_label.setText(first)
        self.message_label.setToolTip(text)

    def _on_problems_changed(self) -> None:
        """The Problems tab says how many files could not be read; new ones get a status message."""
        unreadable = [p for p in self.state.files.problems if not p.skipped]
        n = len(unreadable)
        self.panels["Problems"].setWindowTitle(f"Problems ({n})" if n else "Problems")
        if n > self._problems_told:
            first = unreadable[0]
            files = "1 file" if n == 1 else f"{n} files"
            self._on_message(
                "warning", f"{files} could not be read (see the Problems panel): {first.path.name}: {first.reason}"
            )
        self._problems_told = n

    def _on_model_changed(self) -> None:
        s = self.state
        if s.runner.session is not None:
            self.device_label.setText(f"model {s.runner.session.version} on {s.runner.session.device.upper()}")
        elif s.runner.model_error:
            self.device_label.setText("model: error")
            self.device_label.setToolTip(s.runner.model_error)
        else:
            self.device_label.setText("model: not loaded")

    def _render_overlay_controls(self) -> None:
        ov = self.state.display.overlay
        d = self.state.display
        self.overlay_controls.show_state(ov.kind, ov.opacity, d.overlay_range, d.choices)
        self.act_evidence.setChecked(ov.kind == "evidence")
        self.act_error.setChecked(ov.kind == "error")
        offered = "lesion" in d.choices  # only while the loaded model has the output
        self.act_lesion.setVisible(offered)
        self.act_lesion.setEnabled(offered)
        self.act_lesion.setChecked(ov.kind == "lesion")
        self.act_recon.setChecked(ov.reconstruction)

    def _on_current_changed(self, key: str) -> None:
        self.preset_combo.blockSignals(True)
        self.preset_combo.clear()
        img = self.state.memory.image(key) if key else None
        if img is not None:
            for i, w in enumerate(img.windows):
                self.preset_combo.addItem(f"{w.name or 'File window'} (C {w.center:g} / W {w.width:g})", f"dicom:{i}")
        for name, title in PRESETS.items():
            if name == "default" and img is not None and img.windows:
                continue
            self.preset_combo.addItem(title, name)
        self.preset_combo.blockSignals(False)
        self._render_display_controls()
        self._render_overlay_controls()  # the colour range is the current study's
        rec = self.state.files.current_record
        if rec is not None:
            self.setWindowTitle(
                f"mammo-review — {rec.patient_id or rec.path.name} — research use only, not for diagnosis"
            )

    def _render_display_controls(self) -> None:
        d = self.state.display.view
        self.layout_actions[d.layout].setChecked(True)
        self.act_invert.setChecked(d.inverted)
        self.act_magnifier.setChecked(d.magnifier)
        self.act_lock_window.setChecked(d.window_locked)
        preset = "dicom:0" if d.preset == "default" and self.preset_combo.findData("dicom:0") >= 0 else d.preset
        i = self.preset_combo.findData(preset)
        self.preset_combo.blockSignals(True)
        self.preset_combo.setCurrentIndex(i if d.window is None else -1)
        if d.window is not None:
            self.preset_combo.setPlaceholderText(f"C {d.window[0]:.4g} / W {d.window[1]:.4g}")
        self.preset_combo.blockSignals(False)

    # ------------------------------------------------------------------ requests
    def reset_view(self) -> None:
        self.state.display.reset()
        self.viewer.reset_views()

    def _next_preset(self) -> None:
        n = self.preset_combo.count()
        if n:
            i = (self.preset_combo.currentIndex() + 1) % n
            self.state.display.set_view(preset=self.preset_combo.itemData(i))

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of studies")
        if folder:
            self.state.open_paths([folder])

    def open_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self, "Open images", "", "Images (*.dcm *.DCM *.dicom *.png *.pgm *.jpg *.jpeg *.tif *.tiff);;All files (*)"
        )
        if files:
            self.state.open_paths(files)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for entry in self.settings.recent_paths:
            paths = entry.split("|")
            title = paths[0] + (f" (+{len(paths) - 1})" if len(paths) > 1 else "")
            act = self.recent_menu.addAction(title)
            act.triggered.connect(lambda _c=False, p=paths: self.state.open_paths(p))
        if not self.settings.recent_paths:
            self.recent_menu.addAction("(nothing yet)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear the list").triggered.connect(
                lambda _c=False: self.settings.clear_recent()
            )

    def settings_dialog(self) -> None:
        from inference.model.session import cuda_available

        dlg = SettingsDialog(self.settings, cuda_available(), self)
        if dlg.exec():
            c = dlg.choice()
            self.settings.annotator = c.annotator
            if c.cache_dir and Path(c.cache_dir) != self.settings.cache_dir:
                self.state.runner.set_cache_dir(c.cache_dir)
            if c.model_path != self.settings.model_path:
                self.state.runner.set_model_path(c.model_path)
            if c.device != self.settings.device:
                self.state.runner.set_device(c.device)

    def shortcuts_dialog(self) -> None:
        ShortcutsDialog([*self.shortcut_rows, *self.label_panel.KEYS], self).exec()

    def about_dialog(self) -> None:
        AboutDialog(self.state, self).exec()

    # ------------------------------------------------------------------ drag and drop, quit
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt name
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt name
        paths = [u.toLocalFile() for u in event.mimeData().urls() if isinstance(u, QUrl) and u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.state.open_paths(paths)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt name
        self.settings.window_geometry = self.saveGeometry()
        self.settings.window_state = self.saveState()
        self.state.shutdown()
        self.labels.close()
        super().closeEvent(event)
