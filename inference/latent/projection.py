"""2-D maps of the 496-d latent vectors (PCA, UMAP, t-SNE) and cosine nearest neighbours.

``project(embeddings, ProjectionParams(...), cache_dir=...)`` returns a :class:`Projection`; results
are cached on disk per model version, image set and parameters, so reopening an archive is instant.
UMAP and t-SNE first reduce to ``pca_dims`` dimensions by PCA. umap (and numba) are imported only
when a UMAP is first asked for; numba then compiles into a per-user disk cache
(:func:`numba_cache_dir`, or ``NUMBA_CACHE_DIR`` when set) so later sessions skip the compilation.
On a fresh install the app compiles them ahead, in a background process at start-up
(:mod:`inference.latent.warmup`); a UMAP asked for meanwhile waits for it.

``SimilarityIndex`` answers "which images look most like this one" in the full latent space by
cosine similarity (distance = 1 - cosine), the query itself excluded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import ProjectionCancelled, ProjectionError
from inference.formats import Embeddings
from inference.latent.warmup import UMAP_WARM_UP

__all__ = [
    "METHODS",
    "ProjectionParams",
    "Projection",
    "project",
    "pca",
    "knn_euclidean",
    "cache_digest",
    "numba_cache_dir",
    "Neighbour",
    "SimilarityIndex",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelledFn = Callable[[], bool]

#: Projection methods, in the order the app offers them.
METHODS: tuple[str, ...] = ("pca", "umap", "tsne")
METHOD_NAMES: dict[str, str] = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
_CACHE_FORMAT = "mammo-review-projection/1"
#: Up to this many images UMAP's neighbours are found exactly (numpy, no numba compilation).
EXACT_KNN_LIMIT = 20_000
_PROGRESS_TOTAL = 1000
_PCA_CHUNK = 8192
#: Up to this many rows PCA is exact (covariance eigen-decomposition); beyond, randomized.
EXACT_PCA_LIMIT = 20_000
_OVERSAMPLE = 10
_POWER_ITERATIONS = 5


@dataclass(frozen=True)
class ProjectionParams:
    """How to project. Only the fields of the chosen method matter (and enter the cache key)."""

    method: str = "pca"
    n_neighbors: int = 15  # UMAP: size of the local neighbourhood
    min_dist: float = 0.1  # UMAP: how tightly points may pack
    perplexity: float = 30.0  # t-SNE: effective number of neighbours
    n_epochs: int = 200  # UMAP optimisation epochs
    tsne_iter: int = 1000  # t-SNE gradient-descent iterations (at least 250)
    pca_dims: int = 50  # UMAP / t-SNE run on this many principal components
    seed: int = 0  # random seed of t-SNE, and of UMAP when reproducible
    # UMAP: same result every run, but on one core (the disk cache keeps results stable anyway)
    reproducible: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ProjectionError(f"unknown projection method {self.method!r} (expected one of {', '.join(METHODS)})")
        if self.n_neighbors < 2:
            raise ProjectionError(f"n_neighbors must be at least 2, not {self.n_neighbors}")
        if not 0.0 <= self.min_dist <= 1.0:
            raise ProjectionError(f"min_dist must lie in [0, 1], not {self.min_dist}")
        if not self.perplexity > 0:
            raise ProjectionError(f"perplexity must be positive, not {self.perplexity}")
        if self.n_epochs < 10:
            raise ProjectionError(f"n_epochs must be at least 10, not {self.n_epochs}")
        if self.tsne_iter < 250:
            raise ProjectionError(f"tsne_iter must be at least 250, not {self.tsne_iter}")
        if self.pca_dims < 2:
            raise ProjectionError(f"pca_dims must be at least 2, not {self.pca_dims}")

    def relevant(self) -> dict[str, Any]:
        """The parameters that change the result of this method."""
        if self.method == "pca":
            return {"method": "pca"}
        keep: tuple[str, ...]
        if self.method == "umap":
            keep = ("method", "n_neighbors", "min_dist", "n_epochs", "pca_dims", "seed", "reproducible")
        else:
            keep = ("method", "perplexity", "tsne_iter", "pca_dims", "seed")
        return {k: v for k, v in asdict(self).items() if k in keep}

    def describe(self) -> str:
        """A short human-readable label, e.g. ``UMAP (15 neighbours, min dist 0.1)``."""
        if self.method == "umap":
            return f"UMAP ({self.n_neighbors} neighbours, min dist {self.min_dist:g})"
        if self.method == "tsne":
            return f"t-SNE (perplexity {self.perplexity:g})"
        return "PCA"


@dataclass(frozen=True)
class Projection:
    """2-D coordinates ``xy[i]`` of image ``keys[i]``."""

    keys: tuple[str, ...]
    xy: np.ndarray  # (N, 2) float32
    params: ProjectionParams  # as used (n_neighbors / perplexity clamped to the number of images)
    model_version: str = ""
    seconds: float = 0.0  # time the computation took (0 when it came from the cache)
    from_cache: bool = False


# --------------------------------------------------------------------------- linear algebra
def pca(z: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Principal-component scores of ``z`` (rows = samples), float32, signs as scikit-learn's.

    Up to :data:`EXACT_PCA_LIMIT` rows: eigen-decomposition of the covariance matrix (as scikit-learn's
    ``covariance_eigh`` solver). Beyond: a randomized range finder with power iterations and an exact
    Rayleigh-Ritz step (Halko et al. 2011), which needs a few thin products instead of the d x d Gram
    matrix and agrees with the exact components to display precision.
    """
    x = np.asarray(z, np.float32)
    if x.ndim != 2:
        raise ProjectionError(f"PCA needs a 2-D array, got shape {x.shape}")
    n, d = x.shape
    k = min(n_components, d)
    if n == 0:
        return np.zeros((0, n_components), np.float32)
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    if n > EXACT_PCA_LIMIT and k + _OVERSAMPLE < d // 2:
        comps = _components_randomized(x, mean, k)
    else:
        comps = _components_exact(x, mean, k)
    # scikit-learn's svd_flip: the largest absolute loading of each component is positive.
    signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
    signs[signs == 0] = 1.0
    proj = (comps * signs[:, None]).T.astype(np.float32)
    out = np.empty((n, k), np.float32)
    for s in range(0, n, _PCA_CHUNK):
        out[s : s + _PCA_CHUNK] = (x[s : s + _PCA_CHUNK] - mean) @ proj
    if k < n_components:
        out = np.hstack([out, np.zeros((n, n_components - k), np.float32)])
    return np.ascontiguousarray(out, np.float32)


def _components_exact(x: np.ndarray, mean: np.ndarray, k: int) -> np.ndarray:
    n, d = x.shape
    cov = np.zeros((d, d), np.float64)
    for s in range(0, n, _PCA_CHUNK):  # centred chunks: no full-size copy, float64 accumulation
        xc = x[s : s + _PCA_CHUNK] - mean
        cov += xc.T @ xc
    cov /= max(n - 1, 1)
    _, vecs = np.linalg.eigh(cov)
    out: np.ndarray = vecs[:, ::-1][:, :k].T  # (k, d), largest variance first
    return out


def _components_randomized(x: np.ndarray, mean: np.ndarray, k: int) -> np.ndarray:
    n, d = x.shape
    q = np.random.default_rng(0).standard_normal((d, k + _OVERSAMPLE)).astype(np.float32)
    for _ in range(_POWER_ITERATIONS):
        y = x @ q - mean @ q  # centred X times Q, without centring X
        q, _ = np.linalg.qr(x.T @ y - np.outer(mean, y.sum(axis=0)))
    y = (x @ q - mean @ q).astype(np.float64)
    _, vecs = np.linalg.eigh(y.T @ y / max(n - 1, 1))  # covariance restricted to the found subspace
    out: np.ndarray = (q.astype(np.float64) @ vecs[:, ::-1][:, :k]).T
    return out


def knn_euclidean(x: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (each point first, as its own neighbour), Euclidean.

    Blocked matrix products, blocks spread over the CPU cores (numpy releases the GIL):
    (N, k) int64 indices and float32 distances, sorted by distance.
    """
    x = np.asarray(x, np.float32)
    n = len(x)
    k = min(k, n)
    sq = np.einsum("ij,ij->i", x, x)
    idx = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)

    def rows(s: int) -> None:
        e = min(n, s + block)
        d2 = sq[s:e, None] - 2.0 * (x[s:e] @ x.T) + sq[None, :]
        d2[np.arange(e - s), np.arange(s, e)] = -1.0  # a point is its own nearest neighbour
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (e - s, 1))
        pd = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        idx[s:e] = np.take_along_axis(part, order, axis=1)
        dist[s:e] = np.sqrt(np.maximum(np.take_along_axis(pd, order, axis=1), 0.0))

    starts = range(0, n, block)
    if len(starts) > 1:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            list(pool.map(rows, starts))
    else:
        for s in starts:
            rows(s)
    return idx, dist


# --------------------------------------------------------------------------- numba / umap
_umap_lock = threading.Lock()
_umap_ready = False


def numba_cache_dir() -> Path:
    """The per-user folder numba compiles into (the platform's usual cache place)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mammo-review" / "numba"


def _import_umap() -> Any:
    """Import umap once, with numba compiling into a disk cache.

    umap-learn declares most of its kernels without ``cache=True``; they would be compiled again in
    every session (~25 s). Turning caching on for its module-level dispatchers makes the second
    session load them from disk. (Kernels that take functions as arguments, as pynndescent's do,
    cannot be cached; that is why small sets get exact neighbours from :func:`knn_euclidean`.)
    """
    global _umap_ready
    with _umap_lock:
        if _umap_ready:
            return sys.modules["umap"]
        if not os.environ.get("NUMBA_CACHE_DIR"):
            folder = numba_cache_dir()
            try:
                folder.mkdir(parents=True, exist_ok=True)
                os.environ["NUMBA_CACHE_DIR"] = str(folder)
            except OSError as exc:  # numba then falls back to its own places
                log.warning("cannot create the numba cache folder %s (%s)", folder, exc)
            if "numba" in sys.modules:  # imported earlier by someone else: re-read the variable
                sys.modules["numba"].config.reload_config()
        with warnings.catch_warnings():  # "Tensorflow not installed; ParametricUMAP will be unavailable"
            warnings.simplefilter("ignore", ImportWarning)
            import umap
            import umap.distances
            import umap.layouts
            import umap.spectral
            import umap.umap_
            import umap.utils
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher

        umap.layouts.tqdm = _lock_safe_tqdm()  # the epoch loop's bar: see _lock_safe_tqdm

        for module in (umap.umap_, umap.layouts, umap.utils, umap.spectral, umap.distances):
            for obj in vars(module).values():
                if isinstance(obj, Dispatcher) and isinstance(getattr(obj, "_cache", None), NullCache):
                    try:
                        obj.enable_caching()
                    except RuntimeError as exc:  # no source file to key the cache on (e.g. frozen without .py)
                        log.warning("numba cannot cache %s: %s", obj.py_func.__name__, exc)
                        break
        _umap_ready = True
        return umap


def _lock_safe_tqdm() -> type:
    """umap's tqdm bar with two changes for a cancellable UMAP in a long-lived process.

    A cancel is raised from :class:`_EpochWriter` inside tqdm's ``display()``, which tqdm's
    ``refresh()`` calls holding its process-wide write lock without a ``finally``: the lock would stay
    held, and the next UMAP (or tqdm's monitor thread, and with it the app's exit) would wait for it
    forever. Here ``refresh`` releases the lock whatever happens, and there is no monitor thread."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    class LockSafeTqdm(tqdm):  # type: ignore[misc]
        monitor_interval = 0

        def refresh(self, nolock: bool = False, lock_args: tuple[Any, ...] | None = None) -> bool | None:
            if self.disable:
                return None
            if not nolock:
                if lock_args:
                    if not self._lock.acquire(*lock_args):
                        return False
                else:
                    self._lock.acquire()
            try:
                self.display()
            finally:
                if not nolock:
                    self._lock.release()
            return True

    return LockSafeTqdm


class _EpochWriter:
    """A file for tqdm: turns umap's epoch bar into progress calls and raises on cancel."""

    _count = re.compile(r"(\d+)/(\d+)")

    def __init__(self, report: Callable[[float], None], cancelled: CancelledFn) -> None:
        self._report = report
        self._cancelled = cancelled

    def write(self, text: str) -> int:
        found = self._count.findall(text)
        if found:
            done, total = (int(v) for v in found[-1])
            if total:
                self._report(done / total)
        if self._cancelled():
            raise ProjectionCancelled("UMAP cancelled")
        return len(text)

    def flush(self) -> None:
        return None


class _Stages:
    """Maps the stages of a method onto one 0..1000 progress scale and checks for cancel."""

    def __init__(self, progress: ProgressFn | None, cancelled: CancelledFn | None) -> None:
        self._progress = progress
        self._cancelled = cancelled or (lambda: False)

    def at(self, fraction: float) -> None:
        self.check()
        if self._progress is not None:
            self._progress(int(round(min(max(fraction, 0.0), 1.0) * _PROGRESS_TOTAL)), _PROGRESS_TOTAL)

    def check(self) -> None:
        if self._cancelled():
            raise ProjectionCancelled("projection cancelled")

    def span(self, lo: float, hi: float) -> Callable[[float], None]:
        def report(f: float) -> None:
            if self._progress is not None:
                self._progress(int(round((lo + (hi - lo) * f) * _PROGRESS_TOTAL)), _PROGRESS_TOTAL)

        return report

    @property
    def cancelled(self) -> CancelledFn:
        return self._cancelled


def _reduce(z: np.ndarray, dims: int) -> np.ndarray:
    if z.shape[1] <= dims:
        return np.ascontiguousarray(z, np.float32)
    return pca(z, min(dims, len(z)))


def _umap(z: np.ndarray, p: ProjectionParams, stages: _Stages) -> tuple[np.ndarray, ProjectionParams]:
    n = len(z)
    if n < 5:
        raise ProjectionError(f"UMAP needs at least 5 images, there are {n}")
    p = replace(p, n_neighbors=min(p.n_neighbors, n - 1))
    stages.at(0.0)
    UMAP_WARM_UP.wait(stages.cancelled)  # compiling in the background: load its kernels, not compile again
    umap = _import_umap()
    stages.at(0.05)
    x = _reduce(z, p.pca_dims)
    stages.at(0.10)
    knn: tuple[Any, Any, Any] = (None, None, None)
    if n <= EXACT_KNN_LIMIT:
        idx, dist = knn_euclidean(x, p.n_neighbors)
        knn = (idx, dist, None)
    stages.at(0.30)
    writer = _EpochWriter(stages.span(0.35, 1.0), stages.cancelled)
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=p.n_neighbors,
        min_dist=p.min_dist,
        n_epochs=p.n_epochs,
        low_memory=True,
        random_state=p.seed if p.reproducible else None,
        n_jobs=1 if p.reproducible else -1,
        precomputed_knn=knn,
        verbose=False,
        tqdm_kwds={"file": writer, "disable": False, "mininterval": 0.1, "bar_format": "{n}/{total}", "ascii": True},
    )
    with warnings.catch_warnings():
        # Harmless notes from umap/sklearn: a disconnected neighbour graph, no transform() without an index.
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        xy = reducer.fit_transform(x)
    return np.asarray(xy, np.float32), p


def _tsne(z: np.ndarray, p: ProjectionParams, stages: _Stages) -> tuple[np.ndarray, ProjectionParams]:
    n = len(z)
    if n < 5:
        raise ProjectionError(f"t-SNE needs at least 5 images, there are {n}")
    p = replace(p, perplexity=float(min(p.perplexity, max(1.0, (n - 1) / 3.0))))
    stages.at(0.0)
    from sklearn.manifold import TSNE

    x = _reduce(z, p.pca_dims)
    stages.at(0.10)
    tsne = TSNE(
        n_components=2,
        perplexity=p.perplexity,
        init="pca",
        learning_rate="auto",
        max_iter=p.tsne_iter,
        random_state=p.seed,
        n_jobs=-1,
    )
    xy = tsne.fit_transform(x)  # sklearn offers no progress hook: reported by stage only
    return np.asarray(xy, np.float32), p


# --------------------------------------------------------------------------- cache
def cache_digest(emb: Embeddings, params: ProjectionParams) -> str:
    """The cache key: model version, image keys, the method's parameters and a sample of ``z``."""
    h = hashlib.sha256()
    h.update(_CACHE_FORMAT.encode())
    h.update(json.dumps(params.relevant(), sort_keys=True).encode())
    h.update(f"\0{emb.model_version}\0{emb.z.shape}\0".encode())
    h.update("\n".join(emb.keys).encode("utf-8", "surrogatepass"))
    z = np.ascontiguousarray(emb.z, np.float32)
    if not emb.model_version:
        h.update(z.tobytes())  # no version to trust: the vectors themselves decide
    elif len(z):
        h.update(np.ascontiguousarray(z[:: max(1, len(z) // 64)]).tobytes())
    return h.hexdigest()


def _cache_path(cache_dir: Path, params: ProjectionParams, digest: str) -> Path:
    return cache_dir / f"{params.method}-{digest[:32]}.npz"


def _read_cache(path: Path, digest: str, n: int) -> tuple[np.ndarray, ProjectionParams] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != _CACHE_FORMAT or str(data["digest"]) != digest:
                return None
            xy = np.asarray(data["xy"], np.float32)
            params = ProjectionParams(**json.loads(str(data["params"])))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, KeyError, ValueError, TypeError, ProjectionError) as exc:
        log.warning("ignoring unreadable projection cache %s (%s)", path, exc)
        return None
    if xy.shape != (n, 2) or not np.all(np.isfinite(xy)):
        return None
    return xy, params


def _write_cache(path: Path, digest: str, xy: np.ndarray, params: ProjectionParams) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(
                f,
                format=np.asarray(_CACHE_FORMAT),
                digest=np.asarray(digest),
                params=np.asarray(json.dumps(asdict(params))),
                xy=np.asarray(xy, np.float32),
            )
        os.replace(tmp, path)
    except OSError as exc:  # a cache that cannot be written only costs time
        log.warning("cannot write projection cache %s (%s)", path, exc)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


# --------------------------------------------------------------------------- public entry
def project(
    emb: Embeddings,
    params: ProjectionParams | None = None,
    *,
    cache_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> Projection:
    """Project ``emb.z`` to 2-D. ``progress(done, total)``; ``cancelled()`` polled (raises ProjectionCancelled).

    With ``cache_dir`` the result is looked up first and stored after computing.
    """
    params = params or ProjectionParams()
    stages = _Stages(progress, cancelled)
    n = len(emb.keys)
    digest = ""
    path: Path | None = None
    if cache_dir is not None and n:
        digest = cache_digest(emb, params)
        path = _cache_path(Path(cache_dir), params, digest)
        hit = _read_cache(path, digest, n)
        if hit is not None:
            stages.at(1.0)
            return Projection(emb.keys, hit[0], hit[1], emb.model_version, 0.0, True)
    z = np.asarray(emb.z, np.float32)
    if n and not np.all(np.isfinite(z)):
        bad = int(np.count_nonzero(~np.all(np.isfinite(z), axis=1)))
        raise ProjectionError(f"{bad} of {n} latent vectors hold NaN or infinite values")
    t0 = time.perf_counter()
    if params.method == "pca":
        stages.at(0.0)
        xy, used = pca(z, 2), params
    elif params.method == "umap":
        xy, used = _umap(z, params, stages)
    else:
        xy, used = _tsne(z, params, stages)
    stages.check()
    seconds = time.perf_counter() - t0
    if path is not None:
        _write_cache(path, digest, xy, used)
    stages.at(1.0)
    return Projection(emb.keys, xy, used, emb.model_version, seconds, False)


# --------------------------------------------------------------------------- similar cases
@dataclass(frozen=True)
class Neighbour:
    """A similar image: its key, cosine distance (1 - cosine similarity, 0 = same direction) and row."""

    key: str
    distance: float
    index: int


class SimilarityIndex:
    """Cosine nearest neighbours in the full latent space (unit vectors kept in memory, float32)."""

    def __init__(self, keys: Sequence[str], z: np.ndarray) -> None:
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or len(z) != len(keys):
            raise ProjectionError(f"{len(keys)} keys but latent vectors of shape {z.shape}")
        self.keys: tuple[str, ...] = tuple(keys)
        self._row = {k: i for i, k in enumerate(self.keys)}
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        self._unit = np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)

    @classmethod
    def from_embeddings(cls, emb: Embeddings) -> SimilarityIndex:
        return cls(emb.keys, emb.z)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._row

    def neighbours(self, key: str, k: int = 8) -> tuple[Neighbour, ...]:
        """The ``k`` images closest to ``key`` (itself excluded), nearest first."""
        row = self._row.get(key)
        if row is None:
            raise KeyError(key)
        return self._search(self._unit[row], k, exclude=row)

    def neighbours_of(self, z: np.ndarray, k: int = 8) -> tuple[Neighbour, ...]:
        """The ``k`` images closest to a latent vector not in the index."""
        v = np.asarray(z, np.float32).ravel()
        norm = float(np.linalg.norm(v))
        return self._search(v / norm if norm > 0 else v, k, exclude=None)

    def _search(self, unit: np.ndarray, k: int, exclude: int | None) -> tuple[Neighbour, ...]:
        n = len(self.keys)
        k = max(0, min(k, n - (exclude is not None)))
        if k == 0:
            return ()
        dist = 1.0 - self._unit @ unit
        if exclude is not None:
            dist[exclude] = np.inf
        cand = np.argpartition(dist, k - 1)[:k] if k < n else np.arange(n)
        order = cand[np.lexsort((cand, dist[cand]))]  # by distance, ties by row
        return tuple(Neighbour(self.keys[i], float(max(dist[i], 0.0)), int(i)) for i in order[:k])
