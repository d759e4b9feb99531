"""A headless check of the runtime, built as the ``mammo-review-selftest`` executable (build.spec).

It proves that a frozen bundle (or an installed environment) has what the app needs, without Qt:
every pixel decoder plugin pydicom should find (the pylibjpeg ones through entry points, which
need their distribution metadata), the bundled model through ``importlib.resources`` and ONNX
Runtime, scikit-learn's OpenMP code, and UMAP / t-SNE maps through ``inference.latent.projection`` (numba
compiling into its per-user disk cache).
Each check prints one ``OK``/``FAIL`` line; the exit status is the number of failures.

    mammo-review-selftest            (frozen)        python -m inference._selftest   (source)
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from inference.imaging.decode import LoadedImage
    from inference.model.predict import Prediction

__all__ = ["EXPECTED_PLUGINS", "main"]

#: Transfer syntax (phantom short name) -> pydicom decoding plugins that must all decode it.
EXPECTED_PLUGINS: dict[str, tuple[str, ...]] = {
    "explicit": ("",),
    "deflate": ("",),
    "rle": ("pydicom", "pylibjpeg"),
    "jpeg2000": ("gdcm", "pylibjpeg"),
    "jpegls": ("gdcm", "pyjpegls"),
    "jpeg-lossless": ("gdcm",),
    "jpeg-baseline": ("gdcm", "pillow"),
}
_LOSSY = {"jpeg-baseline"}
_FORBIDDEN = ("torch", "onnx", "onnxscript", "training", "matplotlib", "PySide6", "pyqtgraph")


class _Report:
    """Runs the checks, prints one line each and counts failures."""

    def __init__(self) -> None:
        self.failures = 0

    def check(self, name: str, fn: Callable[[], str]) -> None:
        t0 = time.perf_counter()
        try:
            detail = fn()
        except Exception as exc:  # a self-test reports every failure and goes on
            self.failures += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc(limit=4, file=sys.stderr)
            return
        print(f"OK   {name} ({time.perf_counter() - t0:.2f} s) {detail}", flush=True)


#: What the runtime loads, by import name. umap, pynndescent and numba are only looked up here:
#: inference.latent.projection must import them itself (it points numba at its cache folder first).
_IMPORTED = (
    "numpy", "scipy", "PIL", "pydicom", "pylibjpeg", "openjpeg", "rle", "jpeg_ls", "gdcm", "onnxruntime", "sklearn",
)
_FOUND = ("umap", "pynndescent", "numba", "llvmlite")


def _imports() -> str:
    """Import every runtime module; name each one that does not load and why (a missing shared
    library, a module PyInstaller did not collect), and what keeps ONNX Runtime off CUDA."""
    import importlib
    import importlib.util

    from inference.model.providers import cuda_problem

    failed = []
    for name in _IMPORTED:
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, OSError from a shared library: name both
            failed.append(f"{name} ({type(exc).__name__}: {exc})")
    failed += [f"{name} (not found)" for name in _FOUND if importlib.util.find_spec(name) is None]
    if failed:
        raise AssertionError("could not load " + "; ".join(failed))
    cuda = cuda_problem()
    return f"{len(_IMPORTED) + len(_FOUND)} modules; CUDA: {cuda or 'available'}"


def _decoders(folder: Path) -> str:
    """Write one phantom per transfer syntax and decode it with every expected plugin."""
    from pydicom import dcmread

    from inference.phantoms.generator import TRANSFER_SYNTAXES, PhantomSpec, render, write_dicom

    spec = PhantomSpec("L", "CC", "C", masses=1, shape=(256, 192), seed=3)
    image = render(spec)
    done = []
    for name, plugins in EXPECTED_PLUGINS.items():
        path = write_dicom(folder / f"{name}.dcm", image, spec=spec, transfer_syntax=name)
        ds = dcmread(path)
        if ds.file_meta.TransferSyntaxUID != TRANSFER_SYNTAXES[name]:
            raise AssertionError(f"{path.name}: written as {ds.file_meta.TransferSyntaxUID}")
        bits = 8 if name in _LOSSY else 12
        expected = np.round(np.clip(image, 0, 1) * ((1 << bits) - 1))
        for plugin in plugins:
            pixels = _decode(path, plugin)
            diff = np.abs(pixels.astype(np.float64) - expected)
            # lossless: exact; JPEG baseline (quality 95, 8 bits): small mean error
            error = float(diff.mean()) if name in _LOSSY else float(diff.max())
            if error > (2.0 if name in _LOSSY else 0.0):
                raise AssertionError(f"{name} via {plugin or 'native'}: error {error:g} (shape {pixels.shape})")
        done.append(f"{name}[{','.join(p or 'native' for p in plugins)}]")
    return " ".join(done)


def _decode(path: Path, plugin: str) -> np.ndarray:
    """The stored values of `path` decoded by `plugin` ("" = pydicom's choice)."""
    from pydicom import dcmread
    from pydicom.pixels.utils import pixel_array

    values: np.ndarray = pixel_array(dcmread(path), decoding_plugin=plugin)
    return values


def _samples() -> tuple[str, list[LoadedImage]]:
    """Scan and load the bundled sample studies (read through importlib.resources)."""
    from inference.imaging.decode import load_image
    from inference.imaging.studies import scan

    root = Path(str(importlib.resources.files("resources") / "samples"))
    study_set = scan([root])
    if not study_set.images or any(not p.skipped for p in study_set.problems):
        raise AssertionError(f"{root}: {len(study_set.images)} images, problems {study_set.problems}")
    loaded = [load_image(r) for r in study_set.images]
    syntaxes = sorted({r.transfer_syntax for r in study_set.images})
    return f"{len(loaded)} images in {len(study_set.studies)} studies ({'; '.join(syntaxes)}) from {root}", loaded


def _model(loaded: list[LoadedImage]) -> tuple[str, list[Prediction]]:
    from inference.model.predict import predict
    from inference.model.session import ModelSession

    session = ModelSession.load(device="cpu")
    predictions = predict(session, loaded)
    values = np.array([p.p_malignant for p in predictions])
    if len(predictions) != len(loaded) or not np.all(np.isfinite(values)):
        raise AssertionError(f"{len(predictions)} predictions for {len(loaded)} images, p = {values}")
    from inference.formats import SCORING_OUTPUTS as tasks

    if session.manifest.scoring and not session.uses_scoring_graph(tasks):
        raise AssertionError(f"the manifest names a scoring graph and none lies beside {session.path.name}")
    scoring = ", scoring graph" if session.uses_scoring_graph(tasks) else ""
    detail = (
        f"{session.path.name} v{session.version} on {session.device} ({session.threads} threads{scoring}): "
        f"p_malignant {', '.join(f'{v:.3f}' for v in values)}"
    )
    return detail, predictions


def _projections(predictions: list[Prediction]) -> str:
    """UMAP and t-SNE maps of the latent vectors through inference.latent.projection (plus jittered
    copies: the samples are only 8 images); numba compiles into its per-user disk cache."""
    from inference.formats import Embeddings
    from inference.latent.projection import ProjectionParams, numba_cache_dir, project

    z = np.stack([p.z for p in predictions]).astype(np.float32)
    rng = np.random.default_rng(0)
    data = np.concatenate([z + rng.normal(0, 0.01, z.shape).astype(np.float32) for _ in range(8)])
    emb = Embeddings(tuple(f"selftest-{i}" for i in range(len(data))), data, "selftest")
    parts = []
    umap_params = ProjectionParams("umap", n_neighbors=8, n_epochs=60)
    for params in (umap_params, ProjectionParams("tsne", perplexity=10.0, tsne_iter=250)):
        result = project(emb, params)
        if result.xy.shape != (len(data), 2) or not np.all(np.isfinite(result.xy)):
            raise AssertionError(f"{params.describe()} gave shape {result.xy.shape}")
        parts.append(f"{params.describe()} {result.seconds:.1f} s")
    cache = Path(os.environ.get("NUMBA_CACHE_DIR") or numba_cache_dir())
    files = [p for p in cache.rglob("*.nbi")] if cache.is_dir() else []
    if not files:
        raise AssertionError(f"numba wrote no cache index into {cache}")
    return f"{data.shape} -> 2-D: {'; '.join(parts)}; numba cache {cache} holds {len(files)} index files"


def _sklearn() -> str:
    """scikit-learn's compiled OpenMP code (k-means) and PCA, which projections build on."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_info

    data = np.random.default_rng(1).normal(size=(200, 16)).astype(np.float32)
    data[:100] += 4.0
    labels = KMeans(n_clusters=2, n_init=1, random_state=0).fit_predict(data)
    if sorted(np.bincount(labels).tolist()) != [100, 100]:
        raise AssertionError(f"k-means split 200 points as {np.bincount(labels).tolist()}")
    if PCA(n_components=2).fit_transform(data).shape != (200, 2):
        raise AssertionError("PCA gave a wrong shape")
    pools = sorted({f"{i['user_api']}:{i['internal_api']}" for i in threadpool_info()})
    if not any(p.startswith("openmp") for p in pools):
        raise AssertionError(f"no OpenMP runtime loaded (thread pools: {pools})")
    return f"k-means + PCA; thread pools {', '.join(pools)}"


def _layering() -> str:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in _FORBIDDEN)
    if loaded:
        raise AssertionError(f"modules that must not be in the runtime were imported: {', '.join(loaded[:10])}")
    return "no torch, onnx, training, matplotlib or Qt imported"


def main(argv: Sequence[str] | None = None) -> int:
    """Run every check; return the number of failures (0 = the runtime works)."""
    parser = argparse.ArgumentParser(prog="mammo-review-selftest", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-umap", action="store_true", help="skip the UMAP / t-SNE check (numba compiles for ~1 min on a first run)"
    )
    args = parser.parse_args(argv)
    frozen = bool(getattr(sys, "frozen", False))
    where = "frozen" if frozen else "source"
    print(f"mammo-review selftest: python {sys.version.split()[0]}, {where}, {sys.executable}", flush=True)
    report = _Report()
    state: dict[str, list[Any]] = {}

    def samples() -> str:
        detail, state["loaded"] = _samples()
        return detail

    def model() -> str:
        detail, state["predictions"] = _model(state["loaded"])
        return detail

    report.check("imports", _imports)
    with tempfile.TemporaryDirectory(prefix="mammo-selftest-") as tmp:
        report.check("pixel decoders", lambda: _decoders(Path(tmp)))
    report.check("bundled samples", samples)
    report.check("bundled model", model)
    report.check("scikit-learn (OpenMP)", _sklearn)
    if not args.no_umap:
        report.check("projections (umap, t-sne)", lambda: _projections(state["predictions"]))
    report.check("layering", _layering)
    print(f"selftest: {report.failures} failure(s)", flush=True)
    return report.failures


if __name__ == "__main__":
    sys.exit(main())
