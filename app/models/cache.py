"""Predictions cached by image key and model version: in memory, and as one .npz per entry on disk.

Reopening a study then shows its predictions without running the model. The file name is a hash of
(key, version), so a new model version never reads an old model's answers. A cache file that cannot
be read is ignored (and removed): the model simply runs again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from inference.model.predict import Prediction
from inference.model.preprocess import Geometry

__all__ = ["PredictionCache", "MEMORY_ENTRIES"]

MEMORY_ENTRIES = 64
MAX_DISK_BYTES = 2 << 30  # the oldest entries go beyond this
_FORMAT = "mammo-review-prediction-cache/1"
_HALF = ("model_input", "reconstruction")  # images in [0, 1]: float16 is plenty and halves the files


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _encode(pred: Prediction) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": _FORMAT}
    for f in dataclasses.fields(pred):
        value = getattr(pred, f.name)
        if isinstance(value, np.ndarray):
            arrays["a_" + f.name] = value.astype(np.float16) if f.name in _HALF else value
        elif isinstance(value, Geometry):
            meta[f.name] = {"__geometry__": dataclasses.asdict(value)}
        else:
            meta[f.name] = value  # None, str, float (NaN allowed by json), dict of tuples
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    return arrays


def _decode(data: Any) -> Prediction:
    meta = json.loads(bytes(data["meta"]).decode("utf-8"))
    if meta.pop("format", None) != _FORMAT:
        raise ValueError("unknown cache format")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(Prediction):
        if "a_" + f.name in data:
            a = np.array(data["a_" + f.name])
            kwargs[f.name] = a.astype(np.float32) if a.dtype == np.float16 else a
        elif f.name in meta:
            value = meta[f.name]
            if isinstance(value, dict) and "__geometry__" in value:
                value = Geometry(**_tuples(value["__geometry__"]))
            else:
                value = _tuples(value)
            kwargs[f.name] = value
        else:
            raise ValueError(f"cache entry lacks {f.name!r}")
    return Prediction(**kwargs)


class PredictionCache:
    """Prediction lookup by (image key, model version); ``folder=None`` keeps memory only."""

    def __init__(
        self, folder: str | Path | None, memory_entries: int = MEMORY_ENTRIES, max_bytes: int = MAX_DISK_BYTES
    ) -> None:
        self.folder = None if folder is None else Path(folder)
        self.max_bytes = max_bytes
        self._puts = 0
        self._memory: OrderedDict[tuple[str, str], Prediction] = OrderedDict()
        self._limit = max(1, memory_entries)
        self.disk_errors = 0
        self._lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None
        self._writes: list[Future[None]] = []

    def _file(self, key: str, version: str) -> Path:
        assert self.folder is not None
        digest = hashlib.sha256(f"{version}\0{key}".encode()).hexdigest()[:40]
        return self.folder / f"{digest}.npz"

    def get(self, key: str, version: str) -> Prediction | None:
        """The cached prediction, or None. Safe to call from a worker thread."""
        with self._lock:
            hit = self._memory.get((key, version))
        if hit is not None:
            return hit
        if self.folder is None:
            return None
        path = self._file(key, version)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                pred = _decode(data)
        except Exception:  # a damaged cache entry only costs a model run
            self.disk_errors += 1
            path.unlink(missing_ok=True)
            return None
        if pred.key != key or pred.model_version != version:
            return None
        self._remember(pred)
        return pred

    def put(self, pred: Prediction, background: bool = False) -> None:
        """Remember ``pred``; written to disk atomically (a failed write is counted, not raised).
        ``background``: the write happens on the cache's writer thread (:meth:`flush` waits for it);
        the prediction is in memory at once either way."""
        self._remember(pred)
        if self.folder is None:
            return
        if background:
            with self._lock:
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer")
                self._writes.append(self._writer.submit(self._write, pred))
                self._writes = [w for w in self._writes if not w.done()]
            return
        self._write(pred)

    def flush(self) -> None:
        """Wait for the background writes."""
        with self._lock:
            writes, self._writes = self._writes, []
        for w in writes:
            w.result()

    def _write(self, pred: Prediction) -> None:
        assert self.folder is not None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            target = self._file(pred.key, pred.model_version)
            fd, tmp = tempfile.mkstemp(suffix=".npz.part", dir=self.folder)
            with os.fdopen(fd, "wb") as f:
                arrays: dict[str, Any] = _encode(pred)
                np.savez(f, **arrays)  # stored, not deflated: 1.5 ms instead of 55 for a third smaller files
            os.replace(tmp, target)
            self._puts += 1
            if self._puts % 64 == 1:
                self.prune()
        except OSError:
            self.disk_errors += 1

    def prune(self) -> int:
        """Delete the oldest entries beyond ``max_bytes``; returns how many went."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        entries = []
        for p in self.folder.glob("*.npz"):
            try:
                st = p.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size
            removed += 1
        return removed

    def _remember(self, pred: Prediction) -> None:
        k = (pred.key, pred.model_version)
        with self._lock:
            self._memory[k] = pred
            self._memory.move_to_end(k)
            while len(self._memory) > self._limit:
                self._memory.popitem(last=False)

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()

    def __contains__(self, item: tuple[str, str]) -> bool:
        return self.get(*item) is not None
