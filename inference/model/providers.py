"""Why an ONNX Runtime execution provider (or any shared library) does not load, in words.

ONNX Runtime loads its CUDA provider as a shared library of its own
(``onnxruntime/capi/libonnxruntime_providers_cuda.so``; ``onnxruntime_providers_cuda.dll`` on
Windows). When CUDA or cuDNN is missing it logs the loader's error and quietly runs on the CPU.
:func:`cuda_problem` repeats that load here and names what is missing: the CUDA provider itself
(the CPU build of onnxruntime is installed), the CUDA / cuDNN libraries it links against, the
NVIDIA driver, or a device. :func:`load_failure` and :func:`missing_libraries` serve any library
(the app uses them for Qt's platform plugins).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CUDA_PROVIDER",
    "CPU_PROVIDER",
    "LoadFailure",
    "NO_RUNTIME",
    "cuda_problem",
    "installed_runtimes",
    "load_failure",
    "missing_libraries",
    "preload_cuda_libraries",
]

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
GPU_EXTRA = 'pip install -e ".[gpu]"'
NO_RUNTIME = 'ONNX Runtime is not installed: pip install -e ".[cpu]" (or ".[gpu]" for CUDA)'

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")
# The dynamic loader's own message: "libfoo.so.1: cannot open shared object file: No such file or directory"
_DLERROR = re.compile(r"([\w.+-]+\.so(?:\.\d+)*): cannot open shared object file")


def missing_libraries(ldd_output: str) -> list[str]:
    """The libraries ``ldd`` reports as ``not found``, once each, in its order."""
    seen: list[str] = []
    for line in ldd_output.splitlines():
        m = _NOT_FOUND.match(line)
        if m and m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


@dataclass(frozen=True)
class LoadFailure:
    """A library that did not load: the loader's message and every missing library found."""

    path: Path
    error: str
    missing: tuple[str, ...]

    def describe(self) -> str:
        if self.missing:
            return "missing " + ", ".join(self.missing)
        return self.error


def _loaded_in_process() -> set[str]:
    """File names of the shared libraries this process has mapped (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return {Path(line.split()[-1]).name for line in f if "/" in line}
    except OSError:
        return set()


def load_failure(path: str | Path) -> LoadFailure | None:
    """Load ``path`` as a shared library; None when it loads, else why not.

    The loader names only the first missing library; where ``ldd`` exists it lists them all
    (less those this process has already loaded, e.g. CUDA libraries preloaded from NVIDIA's wheels).
    """
    path = Path(path)
    try:
        ctypes.CDLL(str(path))
        return None
    except OSError as exc:
        error = str(exc)
    missing: list[str] = []
    ldd = shutil.which("ldd") if sys.platform.startswith("linux") else None
    if ldd:
        try:
            out = subprocess.run([ldd, str(path)], capture_output=True, text=True, timeout=30, check=False).stdout
            loaded = _loaded_in_process()
            missing = [name for name in missing_libraries(out) if name not in loaded]
        except (OSError, subprocess.SubprocessError):
            missing = []
    first = _DLERROR.search(error)
    if first and first.group(1) not in missing:
        missing.insert(0, first.group(1))
    return LoadFailure(path, error, tuple(missing))


def installed_runtimes() -> list[str]:
    """Which ONNX Runtime distributions are installed (``onnxruntime``, ``onnxruntime-gpu``, ...)."""
    found = []
    for name in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            importlib.metadata.distribution(name)
            found.append(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def preload_cuda_libraries() -> None:
    """Let onnxruntime-gpu (1.21+) load CUDA and cuDNN from NVIDIA's wheels (the ``[gpu]`` extra)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception:  # nothing to preload (no NVIDIA wheels): the system's libraries may still do
        pass


def _cuda_provider_library() -> Path | None:
    import onnxruntime as ort

    capi = Path(ort.__file__).parent / "capi"
    for name in ("libonnxruntime_providers_cuda.so", "onnxruntime_providers_cuda.dll"):
        if (capi / name).is_file():
            return capi / name
    return None


def _driver_problem() -> str:
    """'' when the NVIDIA driver initialises and sees a device, else what is wrong."""
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        cuda = ctypes.CDLL(name)
    except OSError:
        return f"the NVIDIA driver ({name}) is not installed"
    err = cuda.cuInit(0)
    if err != 0:
        return f"the NVIDIA driver does not initialise (cuInit error {err}: no CUDA device, or the driver is too old)"
    count = ctypes.c_int(0)
    err = cuda.cuDeviceGetCount(ctypes.byref(count))
    if err != 0 or count.value == 0:
        return "no CUDA device is visible (check CUDA_VISIBLE_DEVICES)"
    return ""


def cuda_problem() -> str:
    """Why ONNX Runtime's CUDA provider cannot run here, or '' when nothing stands in its way."""
    try:
        import onnxruntime as ort
    except ImportError:
        return NO_RUNTIME
    runtimes = installed_runtimes()
    if "onnxruntime" in runtimes and "onnxruntime-gpu" in runtimes:
        return ("both onnxruntime and onnxruntime-gpu are installed and overwrite each other's module: "
                f"pip uninstall -y onnxruntime onnxruntime-gpu && {GPU_EXTRA}")
    if CUDA_PROVIDER not in ort.get_available_providers():
        which = ", ".join(runtimes) or "an onnxruntime"
        return f"{which} without CUDA is installed (providers: {', '.join(ort.get_available_providers())}); " \
               f"pip uninstall -y onnxruntime && {GPU_EXTRA}"
    library = _cuda_provider_library()
    if library is not None:
        preload_cuda_libraries()
        # As onnxruntime does: its providers' shared part first, with global symbols.
        for shared in library.parent.glob("*onnxruntime_providers_shared*"):
            try:
                ctypes.CDLL(str(shared), mode=getattr(ctypes, "RTLD_GLOBAL", 0))
            except OSError:
                pass
        failure = load_failure(library)
        if failure is not None:
            return (f"onnxruntime-gpu's CUDA provider cannot load: {failure.describe()} "
                    f"(CUDA / cuDNN libraries; {GPU_EXTRA} installs NVIDIA's)")
    return _driver_problem()
