"""``mammo-review --doctor``: what this installation can and cannot do, one line per check.

Checks, each printed as ``ok``, ``FAILED`` or ``absent`` (an optional piece that is not installed)
with its reason: Qt's platform plugin (started in a child process, since Qt aborts when it cannot
load), ONNX Runtime and each of its execution providers (a session of the bundled model created on
each), pydicom's pixel decoders per transfer syntax, the bundled model against its manifest, the
label store (opened, so created when absent, as the app would), and numba's cache folder. The
exit status is 1 when a required check failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "TRANSFER_SYNTAXES", "main", "run_checks"]


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "FAILED" | "absent"
    detail: str
    required: bool = True

    def line(self) -> str:
        tag = self.status if self.required or self.status == "ok" else f"{self.status} (optional)"
        return f"{tag:<18} {self.name}: {self.detail}"


#: Transfer syntaxes the app opens (README: "any common transfer syntax"), by pydicom UID name.
TRANSFER_SYNTAXES = (
    "ExplicitVRLittleEndian", "ImplicitVRLittleEndian", "DeflatedExplicitVRLittleEndian", "RLELossless",
    "JPEGBaseline8Bit", "JPEGExtended12Bit", "JPEGLossless", "JPEGLosslessSV1",
    "JPEGLSLossless", "JPEGLSNearLossless", "JPEG2000Lossless", "JPEG2000",
)


def _qt(platform: str, required: bool) -> Check:
    """Start a QGuiApplication on ``platform`` in a child process; name missing libraries on failure."""
    from app.startup import one_line, platform_problem, plugin_failure

    name = f"Qt platform plugin {platform or '(default)'}"
    env = dict(os.environ)
    if platform:
        env["QT_QPA_PLATFORM"] = platform
    if getattr(sys, "frozen", False):  # no interpreter to start: check the plugin's libraries only
        problem = platform_problem(env)
        failure = plugin_failure(platform)
        reason = one_line(failure) if failure else problem
        return Check(name, "FAILED" if problem else "ok", reason or "its libraries load", required)
    code = ("import sys; from PySide6.QtGui import QGuiApplication; "
            "a = QGuiApplication(sys.argv[:1]); print(a.platformName())")
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return Check(name, "FAILED", f"could not start Python to try it ({exc})", required)
    if done.returncode == 0:
        return Check(name, "ok", f"QGuiApplication started on {done.stdout.strip()!r}", required)
    failure = plugin_failure(platform)
    said = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
    reason = one_line(failure) if failure else (said[0] if said else f"exit status {done.returncode}")
    return Check(name, "FAILED", reason, required)


def _qt_checks() -> Iterator[Check]:
    from app.startup import qt_platform

    platform = qt_platform()
    yield _qt(platform, required=True)
    if sys.platform.startswith("linux") and platform != "xcb":
        # What a desktop session would need, even when this run is headless.
        yield _qt("xcb", required=False)


def _runtime_checks(model: Path) -> Iterator[Check]:
    from inference.errors import MammoReviewError
    from inference.model.providers import CPU_PROVIDER, CUDA_PROVIDER, NO_RUNTIME, cuda_problem, installed_runtimes
    from inference.model.session import ModelSession

    try:
        import onnxruntime as ort
    except ImportError as exc:
        yield Check("ONNX Runtime", "FAILED", f"{NO_RUNTIME} ({exc})")
        return
    runtimes = installed_runtimes()
    detail = (f"{ort.__version__} ({', '.join(runtimes) or 'no distribution metadata'}), "
              f"providers {', '.join(ort.get_available_providers())}")
    both = "onnxruntime" in runtimes and "onnxruntime-gpu" in runtimes
    yield Check("ONNX Runtime", "FAILED" if both else "ok", cuda_problem() if both else detail)

    available = ort.get_available_providers()
    for provider in available:
        required = provider == CPU_PROVIDER
        try:
            if provider in (CPU_PROVIDER, CUDA_PROVIDER):
                session = ModelSession.load(model, device="cpu" if required else "cuda")
                yield Check(provider, "ok", f"a session of {model.name} runs on {session.device}", required)
                continue
            options = ort.SessionOptions()
            options.log_severity_level = 4
            sess = ort.InferenceSession(str(model), sess_options=options, providers=[provider, CPU_PROVIDER])
            used = sess.get_providers()
            ok = provider in used
            detail = f"a session of {model.name} uses {', '.join(used)}"
            yield Check(provider, "ok" if ok else "FAILED", detail, required)
        except (MammoReviewError, RuntimeError, ValueError) as exc:
            yield Check(provider, "FAILED", str(exc), required)
    if CUDA_PROVIDER not in available:
        yield Check(CUDA_PROVIDER, "absent", cuda_problem(), required=False)


def _model_check(model: Path) -> Check:
    from inference.errors import MammoReviewError
    from inference.formats import SCORING_OUTPUTS, manifest_path_for
    from inference.model.session import ModelSession

    try:
        s = ModelSession.load(model, device="cpu")
    except MammoReviewError as exc:
        return Check("model", "FAILED", str(exc))
    sha = "SHA-256 matches" if s.manifest.onnx_sha256 else "no SHA-256 in the manifest"
    scoring = s.uses_scoring_graph(SCORING_OUTPUTS)
    extra = ", with its scoring graph" if scoring else ", no scoring graph (the tasks alone run the whole graph)"
    return Check("model", "ok", f"{s.path} v{s.version}, {sha}, graph matches {manifest_path_for(s.path).name}{extra}")


def _decoder_checks() -> Iterator[Check]:
    import pydicom.uid
    from pydicom.pixels.decoders.base import get_decoder

    for name in TRANSFER_SYNTAXES:
        uid = getattr(pydicom.uid, name)
        label = f"pixel decoder {uid.name}"
        try:
            decoder = get_decoder(uid)
        except NotImplementedError as exc:
            yield Check(label, "FAILED", str(exc))
            continue
        if decoder.is_native:
            yield Check(label, "ok", "pydicom (native)")
            continue
        plugins = decoder.available_plugins
        missing = "; ".join(decoder.missing_dependencies)
        if plugins:
            yield Check(label, "ok", ", ".join(plugins) + (f" (unavailable: {missing})" if missing else ""))
        else:
            yield Check(label, "FAILED", f"no plugin available ({missing})")


def _store_check(settings: str | None) -> Check:
    from app.models.settings import Settings
    from inference.errors import LabelStoreError
    from inference.labels.store import LabelStore

    path = Settings(settings).store_path
    try:
        store = LabelStore(path)
    except LabelStoreError as exc:
        return Check("label store", "FAILED", str(exc))
    store.close()
    return Check("label store", "ok", f"{path} opens and takes writes")


def _numba_check() -> Check:
    from inference.latent.projection import numba_cache_dir

    folder = Path(os.environ.get("NUMBA_CACHE_DIR") or numba_cache_dir())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("numba cache folder", "FAILED", f"{folder} is not writable ({exc.strerror or exc}): "
                     "UMAP maps are compiled again in every session", required=False)
    return Check("numba cache folder", "ok", f"{folder} is writable", required=False)


def run_checks(settings: str | None = None, model: Path | None = None) -> Iterator[Check]:
    """Every check, in order; each one that raises unexpectedly is reported as FAILED, not raised."""
    from inference.model.session import bundled_model_path

    path = model or bundled_model_path()
    steps: list[tuple[str, Callable[[], Iterator[Check]]]] = [
        ("Qt", _qt_checks),
        ("ONNX Runtime", lambda: _runtime_checks(path)),
        ("model", lambda: iter([_model_check(path)])),
        ("pixel decoders", _decoder_checks),
        ("label store", lambda: iter([_store_check(settings)])),
        ("numba cache folder", lambda: iter([_numba_check()])),
    ]
    for name, step in steps:
        try:
            yield from step()
        except Exception as exc:  # the doctor reports every problem and goes on
            yield Check(name, "FAILED", f"{type(exc).__name__}: {exc}")


def main(settings: str | None = None) -> int:
    """Print every check; 1 when a required one failed, else 0."""
    print(f"mammo-review doctor: python {sys.version.split()[0]} on {sys.platform}, {sys.executable}", flush=True)
    failed = 0
    for check in run_checks(settings):
        print(check.line(), flush=True)
        failed += check.required and check.status != "ok"
    print(f"doctor: {failed} required check(s) failed" if failed else "doctor: all required checks passed", flush=True)
    return 1 if failed else 0
