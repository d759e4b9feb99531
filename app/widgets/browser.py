"""The study browser (patient -> study -> images, with view badges and predictions) and the problems list."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTreeView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.state import AppState

__all__ = ["StudyBrowser", "ProblemsPanel", "BrowserFilter", "KEY_ROLE", "SORT_ROLE", "FILTERS", "side_and_view"]

KEY_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
KIND_ROLE = Qt.ItemDataRole.UserRole + 3
FILTERS = {
    "all": "All images",
    "flagged": "Flagged (≥ operating point)",
    "below": "Below the operating point",
    "pending": "Not predicted yet",
}
_COLUMNS = ("Patient / study / image", "View", "P(malignant)", "Flag")
_BADGE = {"R": QColor("#7a3434"), "L": QColor("#2f4f86"), "": QColor("#4a4a4a")}


def side_and_view(state: AppState, key: str) -> str:
    """ "R CC", the file's own view name ("R XCCL"), or the view the image hangs by from the model,
    marked as in the viewer: "L MLO (model)"; "?" for what nobody knows."""
    rec = state.files.record(key)
    view, by_model = state.display.hanging_view(key)
    shown = rec.view or view
    return f"{state.files.laterality(key) or '?'} {shown or '?'}" + (" (model)" if by_model and not rec.view else "")


class BrowserFilter(QSortFilterProxyModel):
    """Filters image rows by prediction; patients and studies stay while a child is shown."""

    def __init__(self, state: AppState) -> None:
        super().__init__()
        self.state = state
        self.mode = "all"
        self.setRecursiveFilteringEnabled(True)
        self.setSortRole(SORT_ROLE)
        # Each of a row's cells changing would sort and filter the whole tree again; the browser
        # invalidates once a batch of predictions has landed instead (StudyBrowser._refilter).
        self.setDynamicSortFilter(False)

    def set_mode(self, mode: str) -> None:
        if mode not in FILTERS:
            raise ValueError(f"unknown filter {mode!r}")
        self.mode = mode
        self.invalidate()

    def filterAcceptsRow(self, row: int, parent: QModelIndex | QPersistentModelIndex) -> bool:  # noqa: N802 - Qt name
        index = self.sourceModel().index(row, 0, parent)
        if self.mode == "all":
            return True
        if index.data(KIND_ROLE) != "image":
            return False
        key = index.data(KEY_ROLE)
        flagged = self.state.runner.flagged(key)
        if self.mode == "flagged":
            return flagged is True
        if self.mode == "below":
            return flagged is False
        return self.state.runner.prediction(key) is None


class StudyBrowser(QWidget):
    """Renders the opened studies; choosing a row asks the state to make it current."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.model = QStandardItemModel(0, len(_COLUMNS))
        self.model.setHorizontalHeaderLabels(list(_COLUMNS))
        self.proxy = BrowserFilter(state)
        self.proxy.setSourceModel(self.model)
        self.tree = QTreeView()
        self.tree.setModel(self.proxy)
        self.tree.setSortingEnabled(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        # Fitted to their contents once per batch (_refilter), not by the header on every changed cell:
        # ResizeToContents measures every row of the column each time one cell changes.
        for c in range(1, len(_COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        self.filter_combo = QComboBox()
        for mode, title in FILTERS.items():
            self.filter_combo.addItem(title, mode)
        self.count_label = QLabel("")
        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        top.addWidget(self.filter_combo, 1)
        top.addWidget(self.count_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addWidget(self.tree)
        self._rows: dict[str, list[QStandardItem]] = {}
        self._parents: list[tuple[list[QStandardItem], list[str]]] = []
        self._selecting = False
        self._ordinal = 0
        self.tree.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self._resort = QTimer(self)
        self._resort.setSingleShot(True)
        self._resort.setInterval(50)
        self._resort.timeout.connect(self._refilter)

        self.filter_combo.currentIndexChanged.connect(lambda i: self.proxy.set_mode(self.filter_combo.itemData(i)))
        self.tree.selectionModel().selectionChanged.connect(self._on_selection)
        state.files.studies_changed.connect(self._rebuild)
        state.runner.predictions_changed.connect(self._on_predictions)
        state.runner.operating_point_changed.connect(lambda _t: self._on_predictions(tuple(self._rows)))
        state.files.current_changed.connect(self._show_current)
        state.memory.images_changed.connect(self._on_images)

    # ------------------------------------------------------------------ state -> tree
    def _rebuild(self) -> None:
        self._selecting = True  # rows vanish: not a user's choice
        try:
            self._fill()
        finally:
            self._selecting = False
        self._show_current(self.state.files.current_key or "")

    def _fill(self) -> None:
        s = self.state
        self.model.removeRows(0, self.model.rowCount())
        self._rows = {}
        self._parents = []
        self._ordinal = 0
        patients: dict[str, list[QStandardItem]] = {}
        for study in s.files.study_set.studies:
            pid = study.patient_id or "(no patient id)"
            if pid not in patients:
                name = study.images[0].patient_name if study.images else ""
                prow = self._row(f"{pid}  {name}".strip(), "patient", "")
                self.model.appendRow(prow)
                patients[pid] = prow
                self._parents.append((prow, []))
            prow = patients[pid]
            title = " ".join(x for x in (_date(study.date), study.description) if x) or study.study_uid[-12:] or "study"
            srow = self._row(f"{title}  ({len(study.images)} images)", "study", "")
            prow[0].appendRow(srow)
            keys = [r.key for r in study.images]
            self._parents.append((srow, keys))
            next(kl for r, kl in self._parents if r is prow).extend(keys)
            for rec in study.images:
                irow = self._row(rec.path.name, "image", rec.key)
                irow[0].setToolTip(str(rec.path))
                irow[1].setForeground(QBrush(QColor("white")))
                self._set_view(irow, rec.key)
                srow[0].appendRow(irow)
                self._rows[rec.key] = irow
        self._on_predictions(tuple(self._rows))
        self.tree.expandAll()

    def _row(self, text: str, kind: str, key: str) -> list[QStandardItem]:
        items = [QStandardItem(text)] + [QStandardItem("") for _ in _COLUMNS[1:]]
        for it in items:
            it.setData(key, KEY_ROLE)
            it.setData(kind, KIND_ROLE)
            it.setData(-1.0, SORT_ROLE)
        self._ordinal += 1
        items[0].setData(self._ordinal, SORT_ROLE)  # column 0 sorts in scan (hanging) order
        return items

    def _set_view(self, row: list[QStandardItem], key: str) -> None:
        """The View cell: side and view (the model's view marked), badge colour, sort key."""
        lat = self.state.files.laterality(key)
        row[1].setText(side_and_view(self.state, key))
        row[1].setBackground(QBrush(_BADGE.get(lat, _BADGE[""])))
        row[1].setData(f"{lat}{self.state.display.hanging_view(key)[0]}", SORT_ROLE)

    def _on_images(self, keys: tuple[str, ...]) -> None:
        for k in keys:
            row = self._rows.get(k)
            if row is not None and not self.state.files.record(k).laterality:
                self._set_view(row, k)
        self._refilter_soon()  # the side column's width: fitted with the next batch

    def _on_predictions(self, keys: tuple[str, ...]) -> None:
        s = self.state
        for k in keys:
            row = self._rows.get(k)
            if row is not None:
                self._set_p(row, [k])
                if not s.files.record(k).view:  # hangs by the model's view, which may just have changed
                    self._set_view(row, k)
        changed = set(keys)
        for row, children in self._parents:  # only the patients and studies the new predictions belong to
            if not changed.isdisjoint(children):
                self._set_p(row, children)
        self._refilter_soon()

    def _refilter_soon(self) -> None:
        """Filter, sort, count and fit the columns once the batch has landed: at most every 50 ms."""
        if not self._resort.isActive():
            self._resort.start()

    def _refilter(self) -> None:
        s = self.state
        self.proxy.invalidate()
        n = sum(1 for k in self._rows if s.runner.prediction(k) is not None)
        flagged = sum(1 for k in self._rows if s.runner.flagged(k))
        self.count_label.setText(f"{n}/{len(self._rows)} predicted, {flagged} flagged")
        for c in range(1, len(_COLUMNS)):
            self.tree.resizeColumnToContents(c)

    def _set_p(self, row: list[QStandardItem], keys: list[str]) -> None:
        s = self.state
        preds = [s.runner.prediction(k) for k in keys]
        ps = [p.p_malignant for p in preds if p is not None and p.p_malignant == p.p_malignant]
        problems = [k for k in keys if k in s.files.load_problems]
        if not ps:
            row[2].setText("✕ unreadable" if problems and len(problems) == len(keys) else "…")
            row[2].setData(-1.0, SORT_ROLE)
            row[3].setText("")
            return
        top = max(ps)
        row[2].setText(f"{top:.3f}")
        row[2].setData(top, SORT_ROLE)
        flagged = top >= s.runner.operating_point
        row[3].setText("▲" if flagged else "")
        row[3].setForeground(QBrush(QColor("#ff6b6b")))
        row[3].setData(1.0 if flagged else 0.0, SORT_ROLE)
        row[2].setForeground(QBrush(QColor("#ff6b6b" if flagged else "#e8e8e8")))

    def _show_current(self, key: str) -> None:
        row = self._rows.get(key)
        if row is None:
            return
        index = self.proxy.mapFromSource(self.model.indexFromItem(row[0]))
        if not index.isValid() or self.tree.currentIndex() == index:
            return
        self._selecting = True
        try:
            self.tree.setCurrentIndex(index)
            self.tree.scrollTo(index)
        finally:
            self._selecting = False

    # ------------------------------------------------------------------ tree -> requests
    def _on_selection(self, *args: object) -> None:
        if self._selecting:
            return
        keys: list[str] = []
        for index in self.tree.selectionModel().selectedRows(0):
            if index.data(KIND_ROLE) == "image":
                keys.append(index.data(KEY_ROLE))  # set_selection drops keys of another opening
            else:  # a patient or study row stands for its images
                src = self.proxy.mapToSource(index)
                item = self.model.itemFromIndex(src)
                keys.extend(_image_keys(item))
        self.state.files.set_selection(keys)
        cur = self.tree.currentIndex()
        if cur.isValid():
            src_item = self.model.itemFromIndex(self.proxy.mapToSource(cur.siblingAtColumn(0)))
            image_keys = _image_keys(src_item) if src_item is not None else []
            if image_keys and self.state.files.current_key not in image_keys:
                self.state.files.set_current(image_keys[0])
            elif src_item is not None and src_item.data(KIND_ROLE) == "image" and src_item.data(KEY_ROLE) in self._rows:
                self.state.files.set_current(src_item.data(KEY_ROLE))

    def visible_keys(self) -> list[str]:
        """Image keys as the tree shows them now (sorted and filtered), for tests and navigation."""
        out: list[str] = []

        def walk(parent: QModelIndex) -> None:
            for r in range(self.proxy.rowCount(parent)):
                idx = self.proxy.index(r, 0, parent)
                if idx.data(KIND_ROLE) == "image":
                    out.append(idx.data(KEY_ROLE))
                walk(idx)

        walk(QModelIndex())
        return out


def _image_keys(item: QStandardItem) -> list[str]:
    if item.data(KIND_ROLE) == "image":
        return [item.data(KEY_ROLE)]
    out: list[str] = []
    for r in range(item.rowCount()):
        child = item.child(r, 0)
        if child is not None:
            out.extend(_image_keys(child))
    return out


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


class ProblemsPanel(QWidget):
    """Every file that could not be read or used, with the reason."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.list = QTreeWidget()
        self.list.setColumnCount(2)
        self.list.setHeaderLabels(["File", "Reason"])
        self.list.setRootIsDecorated(False)
        self.list.setWordWrap(True)
        self.list.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.list.setColumnWidth(0, 220)
        self.summary = QLabel("No problems")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.summary)
        lay.addWidget(self.list)
        state.files.problems_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        problems = self.state.files.problems
        for p in problems:
            item = QTreeWidgetItem([p.path.name, ("skipped: " if p.skipped else "") + p.reason])
            item.setToolTip(0, str(p.path))
            item.setToolTip(1, p.reason)
            if p.skipped:
                item.setForeground(1, QBrush(QColor("#9a9a9a")))
            else:
                item.setForeground(1, QBrush(QColor("#ff8c7a")))
            self.list.addTopLevelItem(item)
        errors = sum(1 for p in problems if not p.skipped)
        skipped = len(problems) - errors
        self.summary.setText(
            "No problems" if not problems else f"{errors} file(s) could not be read, {skipped} skipped (no image)"
        )

    def rows(self) -> list[tuple[str, str]]:
        """(file name, reason) per listed problem."""
        items = [self.list.topLevelItem(i) for i in range(self.list.topLevelItemCount())]
        return [(it.text(0), it.text(1)) for it in items if it is not None]
