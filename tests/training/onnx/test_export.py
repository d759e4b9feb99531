"""ONNX export: interface, parity with torch, manifest, weights back from the .onnx, CLI."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from inference.errors import ModelError
from inference.formats import file_sha256, read_model_manifest, scoring_path_for
from training.cli import COMMANDS, Command, build_parser, main
from training.model import MammoNet, ModelConfig, build_model
from training.onnx.checkpoint import save_checkpoint
from training.onnx.export import OnnxExportResult, OnnxWrapper, export_onnx, verify_onnx
from training.onnx.weights import model_from_onnx, onnx_state_dict

HEIGHT = 128


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One torch thread: the test machine's cores are shared, and oversubscribed threads crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[MammoNet, OnnxExportResult]:
    # a fresh model: instance-norm weights are all equal, the case where initializers could merge
    model = build_model(seed=0)
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    result = export_onnx(model, out, height=HEIGHT, version="9.9.9", training_data=["phantoms"], card="test")
    return model, result


def test_interface_follows_the_architecture_doc(exported: tuple[MammoNet, OnnxExportResult]) -> None:
    _, result = exported
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("image", "tensor(float)", ["N", 1, HEIGHT, "W"])
    assert {o.name: o.shape for o in session.get_outputs()} == {
        "malignancy": ["N", 2],
        "acr": ["N", 6],
        "density": ["N", 4],
        "view": ["N", 2],
        "z": ["N", 496],
        "reconstruction": ["N", 1, HEIGHT, "W"],
        "evidence": ["N", 1, HEIGHT // 16, "W_16"],
    }
    assert onnx.load(str(result.onnx_path)).opset_import[0].version == 17


def test_onnx_runtime_matches_torch(exported: tuple[MammoNet, OnnxExportResult]) -> None:
    model, result = exported
    assert set(result.max_abs_diff) == {"malignancy", "acr", "density", "view", "z", "reconstruction", "evidence"}
    assert max(result.max_abs_diff.values()) <= 1e-4
    # an independent check at a width and batch the export never saw
    x = torch.rand(3, 1, HEIGHT, 448)
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": x.numpy()}), strict=True))
    with torch.no_grad():
        ref = model.eval()(x, evidence=True)
    for task in ("malignancy", "acr", "density", "view"):
        np.testing.assert_allclose(got[task], ref[task].softmax(1).numpy(), atol=1e-5)
        np.testing.assert_allclose(got[task].sum(1), 1.0, atol=1e-5)
    for name in ("z", "reconstruction", "evidence"):
        np.testing.assert_allclose(got[name], ref[name].numpy(), atol=1e-4)


def test_verification_fails_when_onnx_and_torch_differ(exported: tuple[MammoNet, OnnxExportResult]) -> None:
    model, result = exported
    other = build_model(seed=1)
    with pytest.raises(ModelError, match="differs from torch"):
        verify_onnx(other, result.onnx_path, HEIGHT)
    assert max(verify_onnx(model, result.onnx_path, HEIGHT).values()) <= 1e-4
    # the reconstruction has a limit of its own (an 8-bit-displayed image), the other outputs share one
    with pytest.raises(ModelError, match=r"differs from torch: reconstruction [^,]*\(> -1\)$"):
        verify_onnx(model, result.onnx_path, HEIGHT, tolerance=1.0, reconstruction_tolerance=-1.0)
    with pytest.raises(ModelError) as err:
        verify_onnx(model, result.onnx_path, HEIGHT, tolerance=-1.0, reconstruction_tolerance=1.0)
    assert "malignancy" in str(err.value) and "reconstruction" not in str(err.value)


def test_failed_verification_leaves_no_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="differs from torch"):
        export_onnx(build_model(seed=0), tmp_path / "m.onnx", height=HEIGHT, version="1", tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_manifest_carries_the_heads(exported: tuple[MammoNet, OnnxExportResult]) -> None:
    model, result = exported
    manifest = read_model_manifest(result.onnx_path)
    assert manifest == result.manifest
    assert manifest.onnx_sha256 == file_sha256(result.onnx_path)
    assert (manifest.input_height, manifest.latent_dim, manifest.dropout, manifest.version) == (
        HEIGHT,
        496,
        0.5,
        "9.9.9",
    )
    assert manifest.outputs["evidence"] == [None, 1, HEIGHT // 16, None]
    assert manifest.tasks["density"] == ["A", "B", "C", "D"]
    assert "research" in manifest.intended_use.lower()
    for task, head in model.heads.items():
        w, b = manifest.head(task)
        assert np.array_equal(w, head.weight.detach().numpy()) and np.array_equal(b, head.bias.detach().numpy())


def test_weights_round_trip_through_onnx(exported: tuple[MammoNet, OnnxExportResult], tmp_path: Path) -> None:
    model, result = exported
    again = model_from_onnx(result.onnx_path)
    assert again.config == model.config
    state = model.state_dict()
    assert set(onnx_state_dict(result.onnx_path)) == set(state)
    for key, value in again.state_dict().items():
        assert torch.equal(value, state[key]), key
    # and a trained-looking ablated model, whose outputs must come back identical
    cfg = ModelConfig(tasks=("malignancy", "density"), reconstruction=False, multi_level=False)
    trained = build_model(cfg, seed=4)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "ablated.onnx"
    res = export_onnx(trained, path, height=HEIGHT, version="0.1")
    assert list(res.max_abs_diff) == ["malignancy", "density", "z", "evidence"]
    assert res.manifest.latent_dim == 256 and res.manifest.outputs["z"] == [None, 256]
    back = model_from_onnx(path).eval()
    x = torch.rand(1, 1, HEIGHT, 128)
    with torch.no_grad():
        a, b = OnnxWrapper(trained.eval())(x), OnnxWrapper(back)(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_graph_holds_the_transposed_final_step(exported: tuple[MammoNet, OnnxExportResult]) -> None:
    """The reconstruction comes from one transposed convolution, not a full-size upsampling (the
    model's own formulation, MammoNet.decode), and the initializers keep the 3x3 kernel it derives from."""
    _, result = exported
    graph = onnx.load(str(result.onnx_path)).graph
    assert [n.op_type for n in graph.node].count("ConvTranspose") == 1
    producer = {o: n for n in graph.node for o in n.output}
    last = producer["reconstruction"]
    assert last.op_type == "Sigmoid" and producer[last.input[0]].op_type == "ConvTranspose"
    kernel = next(i for i in graph.initializer if i.name == "model.decoder.6.weight")
    assert list(kernel.dims) == [1, 8, 3, 3]


def test_not_an_exported_model_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="junk.onnx"):
        model_from_onnx(junk)


def test_cli_exports_random_and_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r" / "rand.onnx"
    assert main(["export-onnx", "--out", str(out), "--random", "--height", str(HEIGHT), "--seed", "3"]) == 0
    manifest = read_model_manifest(out)
    assert manifest.version == "0.0.0-random" and manifest.card == "rand.md"
    card = (out.parent / "rand.md").read_text(encoding="utf-8")
    assert "UNTRAINED" in card and "Research use only" in card and "400,335 parameters" in card
    assert "max |onnxruntime - torch| evidence" in capsys.readouterr().out

    net = build_model(ModelConfig(tasks=("malignancy", "view")), seed=7)
    ckpt = save_checkpoint(tmp_path / "c.pt", net, epoch=1, extra={"height": HEIGHT, "version": "0.2.0"})
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"metrics": {"auc": 0.5}, "operating_points": {"malignancy": {"default": 0.4}}}))
    out2 = tmp_path / "c.onnx"
    assert main(["export-onnx", "--out", str(out2), "--checkpoint", str(ckpt), "--metrics", str(metrics)]) == 0
    m2 = read_model_manifest(out2)
    assert (m2.version, m2.input_height, list(m2.tasks)) == ("0.2.0", HEIGHT, ["malignancy", "view"])
    assert m2.metrics == {"auc": 0.5} and m2.threshold() == 0.4
    np.testing.assert_array_equal(m2.head("view")[0], net.heads["view"].weight.detach().numpy())

    assert main(["export-onnx", "--out", str(tmp_path / "x.onnx"), "--checkpoint", str(tmp_path / "none.pt")]) == 1
    assert "none.pt" in capsys.readouterr().err

    # re-exporting an .onnx keeps what its manifest says of the weights; the version is the caller's
    out3 = tmp_path / "again" / "c.onnx"
    assert main(["export-onnx", "--out", str(out3), "--checkpoint", str(out2), "--version", "0.2.1"]) == 0
    m3 = read_model_manifest(out3)
    assert (m3.version, m3.input_height, m3.metrics, m3.operating_points) == (
        "0.2.1",
        HEIGHT,
        m2.metrics,
        m2.operating_points,
    )
    assert m3.training_data == m2.training_data and m3.heads == m2.heads


def test_cli_registry_takes_new_commands(capsys: pytest.CaptureFixture[str]) -> None:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--n", type=int, default=1)

    def run(args: argparse.Namespace) -> int:
        print("ran", args.n)
        return 3

    parser = build_parser({**COMMANDS, "hello": Command(add, run, "say hello")})
    args = parser.parse_args(["hello", "--n", "5"])
    assert args._run(args) == 3 and capsys.readouterr().out == "ran 5\n"
    assert "export-onnx" in COMMANDS


def test_bundled_model_matches_its_manifest() -> None:
    models = resources.files("resources") / "models"
    onnx_path = Path(str(models / "mammo-mtl.onnx"))
    manifest = read_model_manifest(onnx_path)
    assert manifest.onnx_sha256 == file_sha256(onnx_path)
    assert (onnx_path.parent / manifest.card).is_file()
    model = model_from_onnx(onnx_path)
    assert manifest.latent_dim == model.config.latent_dim and list(manifest.tasks) == list(model.config.tasks)
    for task, head in model.heads.items():
        assert np.array_equal(manifest.head(task)[0], head.weight.detach().numpy())
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(manifest.outputs)
    assert session.get_inputs()[0].shape == ["N", 1, manifest.input_height, "W"]


def test_scoring_graph_command_adds_it_to_a_model_exported_without(
    exported: tuple[MammoNet, OnnxExportResult], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, result = exported
    path = tmp_path / "older.onnx"
    shutil.copyfile(result.onnx_path, path)
    data = json.loads(result.manifest_path.read_text(encoding="utf-8"))
    scoring = data.pop("scoring")
    path.with_suffix(".json").write_text(json.dumps(data), encoding="utf-8")
    assert main(["scoring-graph", str(path)]) == 0 and "older.scoring.onnx" in capsys.readouterr().out
    after = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert after.pop("scoring") == scoring  # the same graph, byte for byte
    assert after == data  # nothing else in the manifest changed
    part = ort.InferenceSession(str(scoring_path_for(path)), providers=["CPUExecutionProvider"])
    assert [o.name for o in part.get_outputs()] == ["malignancy", "acr", "density", "view", "z"]
    assert not any(n.op_type == "Resize" for n in onnx.load(str(scoring_path_for(path))).graph.node)  # no decoder
