"""Activity: what the app is busy with, and the messages for the user (the status bar renders both)."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

__all__ = ["Activity"]


class Activity(QObject):
    """The busy task with its progress, and messages; every state object reports through one."""

    busy_changed = Signal(str, int, int)  # task ("" = idle), done, total
    message = Signal(str, str)  # level ("info" | "warning" | "error"), text for the user

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.busy: tuple[str, int, int] = ("", 0, 0)

    def set_busy(self, task: str, done: int = 0, total: int = 0) -> None:
        busy = (task, int(done), int(total))
        if busy != self.busy:
            self.busy = busy
            self.busy_changed.emit(*busy)

    def idle(self) -> None:
        self.set_busy("", 0, 0)

    def say(self, level: str, text: str) -> None:
        self.message.emit(level, text)
