"""Device choice: CPU / CUDA, and why CUDA does not load when it does not; the bundled model on CUDA.

The test marked ``gpu`` runs wherever ONNX Runtime's CUDA provider loads, and is skipped with the
reason "no CUDA device" (followed by what stands in CUDA's way) everywhere else.
"""

from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from inference.errors import ModelError
from inference.model import providers
from inference.model.providers import LoadFailure, cuda_problem, load_failure
from inference.model.session import ModelSession, cuda_available

GPU_EXTRA = 'pip install -e ".[gpu]"'


def test_explicit_cuda_without_cuda_support_names_the_extra(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="device 'cuda' was asked for but CUDA cannot run") as info:
        ModelSession.load(tiny_model, device="cuda")
    assert GPU_EXTRA in str(info.value) and "without CUDA is installed" in str(info.value)
    assert not cuda_available()
    assert ModelSession.load(tiny_model, device="auto").device == "cpu"  # "auto" uses the CPU


def test_cuda_offered_but_failing_says_why(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA listed but not usable: "auto" falls back with a notice naming the reason, "cuda" raises it."""
    real = ort.InferenceSession

    def cpu_only(path: str, sess_options: Any = None, providers: Any = None) -> Any:
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", cpu_only)
    why = cuda_problem()  # here: the provider library, the driver or the device
    s = ModelSession.load(tiny_model, device="auto")
    assert s.device == "cpu"
    assert s.notice.startswith("CUDA is offered by onnxruntime but could not be initialised (")
    if why:
        assert why in s.notice
    with pytest.raises(ModelError, match="CUDA could not be initialised: "):
        ModelSession.load(tiny_model, device="cuda")


def test_missing_cuda_libraries_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """onnxruntime-gpu installed, its CUDA provider library present but CUDA / cuDNN missing."""
    library = tmp_path / "libonnxruntime_providers_cuda.so"
    library.write_bytes(b"\x7fELF")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(providers, "installed_runtimes", lambda: ["onnxruntime-gpu"])
    monkeypatch.setattr(providers, "_cuda_provider_library", lambda: library)
    monkeypatch.setattr(providers, "load_failure", lambda path: LoadFailure(
        Path(path), "libcublasLt.so.12: cannot open shared object file: No such file or directory",
        ("libcublasLt.so.12", "libcudnn.so.9")))
    why = cuda_problem()
    assert why.startswith("onnxruntime-gpu's CUDA provider cannot load: missing libcublasLt.so.12, libcudnn.so.9")
    assert GPU_EXTRA in why


def test_both_runtimes_installed_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "installed_runtimes", lambda: ["onnxruntime", "onnxruntime-gpu"])
    assert "both onnxruntime and onnxruntime-gpu are installed" in cuda_problem()


def test_no_onnxruntime_names_the_extras(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ModelError, match=r'ONNX Runtime is not installed: pip install -e "\.\[cpu\]"'):
        ModelSession.load(tiny_model, device="cpu")
    assert not cuda_available()
    assert cuda_problem().startswith("ONNX Runtime is not installed")


def test_load_failure_of_a_real_file(tmp_path: Path) -> None:
    bad = tmp_path / "libnot-a-library.so"
    bad.write_bytes(b"this is no shared library")
    failure = load_failure(bad)
    assert failure is not None and failure.missing == () and failure.error
    assert failure.describe() == failure.error
    assert load_failure(Path(ort.__file__).parent / "capi" / _ort_library()) is None


def _ort_library() -> str:
    capi = Path(ort.__file__).parent / "capi"
    names = [p.name for p in capi.glob("onnxruntime_pybind11_state*")]
    assert names, capi
    return names[0]


def _cuda_session_or_skip() -> ModelSession:
    """The bundled model on CUDA, decided by whether the CUDA provider actually loads."""
    try:
        return ModelSession.load(device="cuda")
    except ModelError as exc:
        pytest.skip(f"no CUDA device ({exc.reason})")


@pytest.mark.gpu
def test_bundled_model_on_cuda_matches_the_cpu() -> None:
    gpu = _cuda_session_or_skip()
    from inference.imaging.decode import load_image
    from inference.imaging.studies import scan
    from inference.model.predict import prepare

    assert gpu.device == "cuda", gpu.notice
    cpu = ModelSession.load(device="cpu")
    root = Path(str(importlib.resources.files("resources") / "samples"))
    records = scan([root]).images[:4]
    assert records
    for record in records:
        x = prepare(load_image(record), cpu.height).array[None, None]
        want, got = cpu.run(x), gpu.run(x)
        for name in cpu.output_names:
            # cuDNN picks other convolution algorithms (TF32 on recent GPUs): close, not equal.
            np.testing.assert_allclose(got[name], want[name], rtol=2e-2, atol=2e-2, err_msg=f"{record.key}: {name}")
        for task in cpu.manifest.tasks:
            top2 = np.sort(want[task][0])[-2:]
            if top2[1] - top2[0] > 0.1:  # a clear answer on the CPU is the same answer on CUDA
                assert np.argmax(got[task]) == np.argmax(want[task]), (record.key, task)
