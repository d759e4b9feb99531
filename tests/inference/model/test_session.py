"""ModelSession: loading, device choice, and the model-vs-manifest checks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.errors import ManifestError, ModelError
from inference.model.session import ModelSession, bundled_model_path, physical_cores

TEST_HEIGHT = 128  # the height of the conftest model


def _copy(model: Path, folder: Path, name: str = "m") -> Path:
    dst = folder / f"{name}.onnx"
    shutil.copyfile(model, dst)
    shutil.copyfile(model.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def _edit_manifest(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    manifest = path.with_suffix(".json")
    data = json.loads(manifest.read_text(encoding="utf-8"))
    edit(data)
    manifest.write_text(json.dumps(data), encoding="utf-8")


def test_loads_on_cpu_and_runs(tiny_session: ModelSession) -> None:
    s = tiny_session
    assert s.device == "cpu"
    assert s.height == TEST_HEIGHT
    assert s.version == "test-0"
    assert 1 <= s.threads <= physical_cores()
    assert s.default_batch_size == 1  # measured fastest per image on the CPU
    out = s.run(np.random.default_rng(0).random((2, 1, TEST_HEIGHT, 192), dtype=np.float32))
    assert set(out) == set(s.manifest.outputs)
    assert out["malignancy"].shape == (2, 2)
    assert out["acr"].shape == (2, 6)
    assert out["density"].shape == (2, 4)
    assert out["view"].shape == (2, 2)
    assert out["z"].shape == (2, s.manifest.latent_dim)
    assert out["reconstruction"].shape == (2, 1, TEST_HEIGHT, 192)
    assert out["evidence"].shape == (2, 1, TEST_HEIGHT // 16, 192 // 16)
    for task in ("malignancy", "acr", "density", "view"):
        np.testing.assert_allclose(out[task].sum(axis=1), 1.0, atol=1e-5)


def test_run_rejects_a_batch_of_the_wrong_shape(tiny_session: ModelSession) -> None:
    with pytest.raises(ModelError, match="does not fit"):
        tiny_session.run(np.zeros((1, 1, TEST_HEIGHT + 64, 128), np.float32))
    with pytest.raises(ModelError, match="multiple of 64"):
        tiny_session.run(np.zeros((1, 1, TEST_HEIGHT, 100), np.float32))


def test_bundled_model_path_is_in_the_resources_package() -> None:
    p = bundled_model_path()
    assert p.name == "mammo-mtl.onnx"
    assert p.parent.name == "models" and p.parent.parent.name == "resources"


def test_missing_model_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found") as info:
        ModelSession.load(tmp_path / "absent.onnx")
    assert info.value.path == tmp_path / "absent.onnx"
    assert "absent.onnx" in str(info.value)


def test_missing_manifest_is_a_model_error(tiny_model: Path, tmp_path: Path) -> None:
    path = _copy(tiny_model, tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(ManifestError, match="manifest not found") as info:
        ModelSession.load(path)
    assert isinstance(info.value, ModelError)
    assert info.value.path == path.with_suffix(".json")


def test_corrupt_bytes_are_not_an_onnx_model(tiny_model: Path, tmp_path: Path) -> None:
    path = _copy(tiny_model, tmp_path)
    path.write_bytes(b"this is not a protobuf at all" * 50)
    _edit_manifest(path, lambda d: d.update(onnx_sha256=""))
    with pytest.raises(ModelError, match="not a valid ONNX model") as info:
        ModelSession.load(path)
    assert info.value.path == path


def test_truncated_model_fails_its_checksum(tiny_model: Path, tmp_path: Path) -> None:
    path = _copy(tiny_model, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="SHA-256") as info:
        ModelSession.load(path)
    assert info.value.path == path


def _drop_heads(d: dict[str, Any]) -> None:
    d["heads"] = {}  # heads of the real shape would contradict the edited manifest first


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["input"].update(height=TEST_HEIGHT * 2),
            f"input height is {TEST_HEIGHT}, the manifest says {TEST_HEIGHT * 2}",
        ),
        (lambda d: d["input"].update(name="pixels"), "input is named 'image', the manifest says 'pixels'"),
        (
            lambda d: d["outputs"].update(segmentation=[None, 1, TEST_HEIGHT, None]),
            "output 'segmentation' listed in the manifest is not in the model",
        ),
        (lambda d: d["outputs"].update(z=[None, 496, 1]), "output 'z' has rank 2"),
        (lambda d: d["outputs"].update(evidence=[None, 1, TEST_HEIGHT // 8, None]), "output 'evidence' has shape"),
        (
            lambda d: (
                _drop_heads(d), d["tasks"].update(density=["A", "B", "C"]), d["outputs"].update(density=[None, 3])
            ),
            "output 'density' has shape",
        ),
        (
            lambda d: (_drop_heads(d), d.update(latent_dim=256), d["outputs"].update(z=[None, 256])),
            "output 'z' has shape",
        ),
    ],
    ids=["height", "input-name", "missing-output", "rank", "evidence-grid", "classes", "latent-dim"],
)
def test_manifest_mismatch_is_one_clear_error(
    tiny_model: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    path = _copy(tiny_model, tmp_path)
    _edit_manifest(path, edit)
    with pytest.raises(ModelError) as info:
        ModelSession.load(path)
    assert message in str(info.value)
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_model_without_an_output_the_manifest_lists(tiny_model: Path, tmp_path: Path) -> None:
    """A manifest that forgets an output is fine (we only run what it lists); one that adds is not."""
    path = _copy(tiny_model, tmp_path)
    _edit_manifest(path, lambda d: d["outputs"].pop("reconstruction"))
    s = ModelSession.load(path, device="cpu")
    out = s.run(np.zeros((1, 1, TEST_HEIGHT, 128), np.float32))
    assert "reconstruction" not in out and "evidence" in out


def test_unknown_device(tiny_model: Path) -> None:
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        ModelSession.load(tiny_model, device="tpu")


def test_thread_count_can_be_set(tiny_model: Path) -> None:
    assert ModelSession.load(tiny_model, device="cpu", threads=1).threads == 1


def _symbolic_model(folder: Path, tiny_model: Path) -> Path:
    """A small graph whose ``malignancy`` has the symbolic shape [N, W / 32] (ONNX Runtime cannot know
    the class count at load; every run must check it), with a manifest of that one 2-class task."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["image"], ["rows"], axes=[2], keepdims=1),
        helper.make_node("MaxPool", ["rows"], ["pooled"], kernel_shape=[1, 32], strides=[1, 32]),
        helper.make_node("Flatten", ["pooled"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["malignancy"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "symbolic-classes",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, TEST_HEIGHT, "W"])],
        [helper.make_tensor_value_info("malignancy", TensorProto.FLOAT, ["N", "C"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "symbolic.onnx"
    onnx.save(model, path)
    data = json.loads(tiny_model.with_suffix(".json").read_text(encoding="utf-8"))
    data.update(onnx_sha256="", heads={}, outputs={"malignancy": [None, 2]},
                tasks={"malignancy": data["tasks"]["malignancy"]})  # fmt: skip
    data.pop("scoring", None)  # a graph of its own: no scoring graph beside it
    path.with_suffix(".json").write_text(json.dumps(data), encoding="utf-8")
    return path


def test_every_run_checks_the_outputs_against_the_manifest(tiny_model: Path, tmp_path: Path) -> None:
    """A 4-class "malignancy" under a 2-class manifest is one clear ModelError on the run, never a p_malignant."""
    session = ModelSession.load(_symbolic_model(tmp_path, tiny_model), device="cpu")  # passes at load
    with pytest.raises(ModelError) as info:
        session.run(np.zeros((3, 1, TEST_HEIGHT, 128), np.float32))
    text = str(info.value)
    assert "output 'malignancy'" in text and "shape [3, 4]" in text and "expected 2 classes, [3, 2]" in text
    assert info.value.path == session.path


def test_a_run_whose_outputs_fit_passes(tiny_model: Path, tmp_path: Path) -> None:
    session = ModelSession.load(_symbolic_model(tmp_path, tiny_model), device="cpu")
    out = session.run(np.zeros((3, 1, TEST_HEIGHT, 64), np.float32))
    assert out["malignancy"].shape == (3, 2)
