"""The network: size, shapes, ablations, exact evidence decomposition, checkpoints."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from inference.errors import ModelError
from training.model import LEVEL_WIDTHS, MammoNet, ModelConfig, build_model, upsample_conv_as_transpose
from training.onnx.checkpoint import load_checkpoint, save_checkpoint
from training.onnx.source import load_checkpoint_or_onnx

N_PARAMETERS = 400_335  # pinned: a change of architecture must be deliberate


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One torch thread: the test machine's cores are shared, and oversubscribed threads crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> MammoNet:
    return build_model(seed=0).eval()


def test_parameter_count_is_pinned(model: MammoNet) -> None:
    assert n_params(model) == N_PARAMETERS


@pytest.mark.parametrize(("batch", "height", "width"), [(2, 128, 64), (1, 192, 320)])
def test_output_shapes(model: MammoNet, batch: int, height: int, width: int) -> None:
    with torch.no_grad():
        out = model(torch.rand(batch, 1, height, width), evidence=True)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "malignancy": (batch, 2),
        "acr": (batch, 6),
        "density": (batch, 4),
        "view": (batch, 2),
        "z": (batch, 496),
        "reconstruction": (batch, 1, height, width),
        "evidence": (batch, 1, height // 16, width // 16),
    }
    maps = model.encode(torch.rand(batch, 1, height, width))
    assert [tuple(m.shape[1:]) for m in maps][-1] == (256, height // 64, width // 64)
    assert out["reconstruction"].min() >= 0 and out["reconstruction"].max() <= 1


@pytest.mark.parametrize("shape", [(1, 1, 100, 64), (1, 1, 128, 96), (1, 3, 128, 64), (1, 128, 64)])
def test_input_shape_is_checked(model: MammoNet, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="multiples of 64"):
        model(torch.rand(*shape))


def test_z_is_concatenated_unit_vectors(model: MammoNet) -> None:
    with torch.no_grad():
        z = model(torch.rand(3, 1, 128, 128))["z"]
    bounds = torch.cumsum(torch.tensor((0, *LEVEL_WIDTHS)), 0).tolist()
    for lo, hi in itertools.pairwise(bounds):
        torch.testing.assert_close(z[:, lo:hi].norm(dim=1), torch.ones(3))


def test_dropout_acts_on_heads_only_in_training() -> None:
    net = build_model(seed=0)
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        train_a, train_b = net.train()(x), net(x)
        eval_a, eval_b = net.eval()(x), net(x)
    assert not torch.equal(train_a["malignancy"], train_b["malignancy"])
    torch.testing.assert_close(train_a["z"], eval_a["z"])
    assert torch.equal(eval_a["malignancy"], eval_b["malignancy"])


def test_ablation_switches() -> None:
    x = torch.rand(2, 1, 128, 128)
    full = build_model(seed=0).eval()
    cases = {
        "no_aux_tasks": ModelConfig(tasks=("malignancy",)),
        "no_reconstruction": ModelConfig(reconstruction=False),
        "single_level": ModelConfig(multi_level=False),
    }
    with torch.no_grad():
        ref = full(x)
        outs = {name: build_model(cfg, seed=0).eval()(x) for name, cfg in cases.items()}
    assert set(outs["no_aux_tasks"]) == {"malignancy", "z", "reconstruction"}
    assert set(outs["no_reconstruction"]) == {"malignancy", "acr", "density", "view", "z"}
    single = outs["single_level"]
    assert ModelConfig(multi_level=False).latent_dim == 256 and single["z"].shape == (2, 256)
    assert build_model(cases["single_level"]).heads["view"].in_features == 256
    # same seed, different graph: the switch changes what comes out
    assert not torch.allclose(single["malignancy"], ref["malignancy"])
    assert n_params(build_model(cases["no_reconstruction"])) < N_PARAMETERS


def test_config_round_trip_and_validation() -> None:
    cfg = ModelConfig(tasks=("view", "malignancy"), reconstruction=False, multi_level=False)
    assert cfg.tasks == ("malignancy", "view")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown task"):
        ModelConfig(tasks=("birads",))
    with pytest.raises(ValueError, match="unknown model config key"):
        ModelConfig.from_dict({"tasks": ["view"], "width": 3})


def test_xavier_init_and_seeding() -> None:
    a, b = build_model(seed=5), build_model(seed=5)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    head = a.heads["acr"]
    bound = math.sqrt(6.0 / (head.in_features + head.out_features))
    assert head.weight.abs().max() <= bound and head.weight.abs().max() > 0.5 * bound
    assert torch.count_nonzero(head.bias) == 0
    before = torch.random.get_rng_state()
    build_model(seed=1)
    assert torch.equal(before, torch.random.get_rng_state())


@pytest.mark.parametrize("multi_level", [True, False])
def test_evidence_sums_to_the_malignancy_logit_difference(multi_level: bool) -> None:
    net = build_model(ModelConfig(multi_level=multi_level), seed=2).eval()
    with torch.no_grad():  # give the head non-trivial biases and instance norms
        net.heads["malignancy"].bias.copy_(torch.tensor([0.3, -0.7]))
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        x = torch.rand(3, 1, 128, 192)
        out = net(x, evidence=True)
        alone = net.evidence(x)
    logits, ev = out["malignancy"], out["evidence"]
    bias = net.heads["malignancy"].bias
    assert ev.shape == (3, 1, 8, 12)
    diff = logits[:, 1] - logits[:, 0]
    torch.testing.assert_close(ev.sum(dim=(1, 2, 3)) + (bias[1] - bias[0]), diff, atol=1e-4, rtol=0)
    assert diff.abs().max() > 1e-3  # the identity is not trivially 0 == 0
    torch.testing.assert_close(alone, ev)


def test_evidence_needs_the_malignancy_head() -> None:
    net = build_model(ModelConfig(tasks=("density",))).eval()
    with pytest.raises(ValueError, match="no malignancy head"):
        net.evidence(torch.rand(1, 1, 128, 64))


@pytest.mark.parametrize(("cin", "cout", "h", "w"), [(8, 1, 5, 7), (3, 4, 1, 1), (16, 2, 6, 2)])
def test_upsample_then_conv_equals_one_transposed_conv(cin: int, cout: int, h: int, w: int) -> None:
    gen = torch.Generator().manual_seed(cin * 100 + h)
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen))
    x = torch.randn(2, cin, h, w, generator=gen)
    with torch.no_grad():
        expected = conv(torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
        got = upsample_conv_as_transpose(x, conv)
    assert got.shape == expected.shape == (2, cout, 2 * h, 2 * w)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="3x3, stride-1, padding-1"):
        upsample_conv_as_transpose(x, torch.nn.Conv2d(cin, cout, 5, padding=2))


def test_decoder_formulations_agree_in_values_and_gradients() -> None:
    """decode() (transposed final step) is the paper's upsample-then-convolve decoder: same
    reconstruction, same gradients for every decoder parameter."""
    net = build_model(seed=2)
    bottleneck = torch.randn(2, LEVEL_WIDTHS[-1], 2, 3, generator=torch.Generator().manual_seed(0))
    results = []
    for reference in (False, True):
        net.zero_grad()
        out = net.decode(bottleneck, reference=reference)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        assert net.decoder is not None
        results.append((out.detach(), [p.grad.clone() for p in net.decoder.parameters()]))
    (fast, fast_grads), (ref, ref_grads) = results
    assert fast.shape == (2, 1, 128, 192)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-6)
    for a, b in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()))  # float32 sums, other order
    with pytest.raises(ValueError, match="no decoder"):
        build_model(ModelConfig(reconstruction=False)).decode(bottleneck)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    net = build_model(ModelConfig(tasks=("malignancy", "view"), multi_level=False), seed=3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(1, 1, 128, 128)
    loss = sum(v.sum() for v in net(x).values())
    loss.backward()
    opt.step()
    path = save_checkpoint(tmp_path / "c.pt", net, epoch=4, optimizer=opt, extra={"height": 128, "version": "1.2"})
    ckpt = load_checkpoint(path)
    assert ckpt.epoch == 4 and ckpt.config == net.config and ckpt.extra == {"height": 128, "version": "1.2"}
    assert ckpt.optimizer is not None and ckpt.optimizer["param_groups"][0]["lr"] == 1e-3
    again, extra = load_checkpoint_or_onnx(path)
    assert extra["height"] == 128
    with torch.no_grad():
        a, b = net.eval()(x), again.eval()(x)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_bad_checkpoint_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="bad.pt"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ModelError, match="not a mammo-review checkpoint"):
        load_checkpoint(other)
