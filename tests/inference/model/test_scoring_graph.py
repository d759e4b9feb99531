"""The scoring graph (the network without its decoder): used for the tasks and z only, same numbers,
checked at load like the model, optional beside a copied model. (Predictions without maps equal those
with them: tests/inference/model/test_predict.py; the app's model list skips it: test_labels_panel.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.errors import ManifestError, ModelError
from inference.formats import SCORING_OUTPUTS, ModelManifest, read_model_manifest, scoring_path_for
from inference.model.session import ModelSession, bundled_model_path

HEADS = SCORING_OUTPUTS


def _copy(model: Path, folder: Path, scoring: bool = True) -> Path:
    dst = folder / "m.onnx"
    for src, to in ((model, dst), (model.with_suffix(".json"), dst.with_suffix(".json"))):
        shutil.copyfile(src, to)
    if scoring:
        shutil.copyfile(scoring_path_for(model), scoring_path_for(dst))
    return dst


def test_export_writes_a_scoring_graph_the_session_uses(tiny_model: Path, tiny_session: ModelSession) -> None:
    manifest = read_model_manifest(tiny_model)
    assert scoring_path_for(tiny_model).is_file()
    assert manifest.scoring["outputs"] == list(HEADS)
    assert tiny_session.uses_scoring_graph(HEADS)
    assert tiny_session.uses_scoring_graph(("malignancy",))
    assert not tiny_session.uses_scoring_graph(None)  # everything: the whole graph
    assert not tiny_session.uses_scoring_graph((*HEADS, "evidence"))
    x = np.random.default_rng(1).random((2, 1, tiny_session.height, 192), dtype=np.float32)
    whole, part = tiny_session.run(x), tiny_session.run(x, outputs=HEADS)
    assert set(part) == set(HEADS)
    for name in HEADS:
        np.testing.assert_array_equal(part[name], whole[name])


def test_bundled_model_has_its_scoring_graph() -> None:
    session = ModelSession.load(bundled_model_path(), device="cpu", threads=1)
    assert session.uses_scoring_graph(HEADS)
    x = np.random.default_rng(2).random((1, 1, session.height, 384), dtype=np.float32)
    whole, part = session.run(x), session.run(x, outputs=HEADS)
    for name in HEADS:
        np.testing.assert_array_equal(part[name], whole[name])


def test_a_model_copied_without_it_runs_whole(tiny_model: Path, tmp_path: Path) -> None:
    session = ModelSession.load(_copy(tiny_model, tmp_path, scoring=False), device="cpu")
    assert not session.uses_scoring_graph(HEADS)
    x = np.random.default_rng(3).random((1, 1, session.height, 128), dtype=np.float32)
    assert set(session.run(x, outputs=HEADS)) == set(HEADS)


def test_a_scoring_graph_that_is_not_the_manifests_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    path = _copy(tiny_model, tmp_path)
    shutil.copyfile(path, scoring_path_for(path))  # the whole model in its place
    with pytest.raises(ModelError, match="SHA-256") as info:
        ModelSession.load(path, device="cpu")
    assert info.value.path == scoring_path_for(path)


def test_a_scoring_graph_with_other_outputs_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    path = _copy(tiny_model, tmp_path)
    shutil.copyfile(path, scoring_path_for(path))
    data = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    data["scoring"]["sha256"] = ""  # checksum not given: the outputs still are
    path.with_suffix(".json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match="scoring graph's outputs are"):
        ModelSession.load(path, device="cpu")


def test_manifest_refuses_scoring_outputs_the_model_lacks(tiny_model: Path) -> None:
    data = read_model_manifest(tiny_model).to_json()
    data["scoring"]["outputs"] = ["malignancy", "lesion"]  # the tiny model has no lesion output
    with pytest.raises(ManifestError, match="not all among the model's"):
        ModelManifest.from_json(data)
    data["scoring"] = {"outputs": ["malignancy"]}
    with pytest.raises(ManifestError, match="needs a sha256"):
        ModelManifest.from_json(data)
