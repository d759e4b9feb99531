"""The multi-task network of Tardy & Mateus (2022), in PyTorch.

Encoder: a strided stem convolution, then five levels (16/32/64/128/256 filters), each
downsampling by 2 and made of two residual blocks of depth-wise separable convolutions with
affine instance normalisation and LeakyReLU; the bottleneck is ``H/64 x W/64 x 256``.
After each level a feature generator (global average pooling, L2 normalisation, dropout)
gives a vector; the five concatenated form the 496-d latent ``z``, on which one linear layer
per task predicts malignancy, ACR category, density and view. A narrower mirrored decoder
(one block per level, no skip connections) rebuilds the image from the bottleneck.

The sixth task, lesion segmentation (``ModelConfig.segmentation``, the paper's future work), is a
small branch on that decoder: from its ``H/8`` feature map (16 channels) an upsampling, a separable
convolution and a 3x3 convolution give one logit per cell of an ``H/4 x W/4`` grid
(:data:`LESION_STRIDE`). It reads the skip-free decoder, so the segmentation pulls on the same
bottleneck as the classifiers.

Because the malignancy head is linear on L2-normalised pooled features, its
malignant-minus-benign logit splits exactly into per-location contributions
(:meth:`MammoNet.evidence_from_levels`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inference.formats import TASK_CLASSES, TASKS

__all__ = [
    "LEVEL_WIDTHS",
    "DECODER_WIDTHS",
    "STEM_WIDTH",
    "EVIDENCE_STRIDE",
    "LESION_STRIDE",
    "SIZE_MULTIPLE",
    "ModelConfig",
    "MammoNet",
    "build_model",
    "upsample_conv_as_transpose",
]

#: Filters of the five encoder levels (their sum, 496, is the latent size with multi-level fusion).
LEVEL_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 256)
#: Filters of the decoder blocks, from the bottleneck up (half the encoder's at each scale).
DECODER_WIDTHS: tuple[int, ...] = (64, 32, 16, 8, 8)
STEM_WIDTH = 16
#: The evidence map is on a grid of ``H/16 x W/16`` (the third level's resolution).
EVIDENCE_STRIDE = 16
#: The lesion map is on a grid of ``H/4 x W/4``.
LESION_STRIDE = 4
_LESION_BLOCK = 2  # index of the decoder block (output at H/8, 16 channels) the lesion branch reads
#: Input height and width must be multiples of this (stem + five levels each halve).
SIZE_MULTIPLE = 64
_EVIDENCE_LEVEL = 2  # index of the level whose grid the evidence map uses
_EPS = 1e-12


@dataclass(frozen=True)
class ModelConfig:
    """What the network predicts; the switches are the paper's ablations."""

    tasks: tuple[str, ...] = TASKS
    reconstruction: bool = True
    multi_level: bool = True
    segmentation: bool = False  # the lesion-segmentation branch on the decoder (output ``lesion``)
    dropout: float = 0.5
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        tasks = tuple(self.tasks)
        unknown = [t for t in tasks if t not in TASK_CLASSES]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"task listed twice in {tasks}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout {self.dropout} is outside [0, 1)")
        # keep the canonical task order whatever order was given
        object.__setattr__(self, "tasks", tuple(t for t in TASKS if t in tasks))

    @property
    def latent_dim(self) -> int:
        return sum(LEVEL_WIDTHS) if self.multi_level else LEVEL_WIDTHS[-1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error, not ignored."""
        known = {f.name for f in fields(cls)}
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown model config key(s): {', '.join(sorted(extra))}")
        kwargs = dict(data)
        if "tasks" in kwargs:
            kwargs["tasks"] = tuple(kwargs["tasks"])
        return cls(**kwargs)


class SeparableConv(nn.Sequential):
    """Depth-wise 3x3 convolution followed by a point-wise 1x1 one (no bias: a norm follows)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        )


class ResidualBlock(nn.Module):
    """Two separable convolutions with instance norm; a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, slope: float) -> None:
        super().__init__()
        self.conv1 = SeparableConv(cin, cout, stride)
        self.norm1 = nn.InstanceNorm2d(cout, affine=True)
        self.conv2 = SeparableConv(cout, cout)
        self.norm2 = nn.InstanceNorm2d(cout, affine=True)
        self.act = nn.LeakyReLU(slope)
        self.shortcut: nn.Module
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.InstanceNorm2d(cout, affine=True)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        out: Tensor = self.act(y + self.shortcut(x))
        return out


class DecoderBlock(nn.Sequential):
    """Nearest upsampling by 2, a separable convolution, instance norm, LeakyReLU."""

    def __init__(self, cin: int, cout: int, slope: float) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            SeparableConv(cin, cout),
            nn.InstanceNorm2d(cout, affine=True),
            nn.LeakyReLU(slope),
        )


class MammoNet(nn.Module):
    """The multi-task network. ``forward`` returns a dict of raw outputs (logits, ``z``, reconstruction)."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        slope = config.negative_slope
        self.stem = nn.Sequential(
            nn.Conv2d(1, STEM_WIDTH, 5, stride=2, padding=2, bias=False),
            nn.InstanceNorm2d(STEM_WIDTH, affine=True),
            nn.LeakyReLU(slope),
        )
        levels = []
        cin = STEM_WIDTH
        for width in LEVEL_WIDTHS:
            levels.append(nn.Sequential(ResidualBlock(cin, width, 2, slope), ResidualBlock(width, width, 1, slope)))
            cin = width
        self.levels = nn.ModuleList(levels)
        self.dropout = nn.Dropout(config.dropout)
        self.heads = nn.ModuleDict({t: nn.Linear(config.latent_dim, len(TASK_CLASSES[t])) for t in config.tasks})
        self.decoder: nn.Sequential | None = None
        self.lesion_head: nn.Sequential | None = None
        if config.reconstruction or config.segmentation:
            blocks: list[nn.Module] = []
            cin = LEVEL_WIDTHS[-1]
            for width in DECODER_WIDTHS:
                blocks.append(DecoderBlock(cin, width, slope))
                cin = width
            blocks += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(cin, 1, 3, padding=1), nn.Sigmoid()]
            self.decoder = nn.Sequential(*blocks)
        if config.segmentation:
            width = DECODER_WIDTHS[_LESION_BLOCK]
            self.lesion_head = nn.Sequential(
                nn.Upsample(scale_factor=2.0, mode="nearest"),
                SeparableConv(width, width),
                nn.InstanceNorm2d(width, affine=True),
                nn.LeakyReLU(slope),
                nn.Conv2d(width, 1, 3, padding=1),
            )
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """Xavier-uniform weights, zero biases, unit/zero instance-norm affines."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.InstanceNorm2d) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ parts
    @property
    def fused_levels(self) -> tuple[int, ...]:
        """Indices of the levels whose pooled features make up ``z``."""
        n = len(LEVEL_WIDTHS)
        return tuple(range(n)) if self.config.multi_level else (n - 1,)

    def encode(self, image: Tensor) -> list[Tensor]:
        """Feature maps of the five levels, finest first (the last is the bottleneck)."""
        # torch.jit re-exports is_tracing without listing it in __all__, and it is unannotated
        if not torch.jit.is_tracing():  # type: ignore[attr-defined,no-untyped-call]  # shapes are symbolic while exporting
            _check_input(image)
        x = self.stem(image)
        maps = []
        for level in self.levels:
            x = level(x)
            maps.append(x)
        return maps

    @staticmethod
    def _pool(feature_map: Tensor) -> tuple[Tensor, Tensor]:
        """(pooled vector [N, C], its clamped L2 norm [N, 1])."""
        g = feature_map.mean(dim=(2, 3))
        n = torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min(_EPS)
        return g, n

    def latent(self, maps: Sequence[Tensor]) -> Tensor:
        """The latent ``z`` (before dropout): concatenated L2-normalised pooled features."""
        parts = []
        for i in self.fused_levels:
            g, n = self._pool(maps[i])
            parts.append(g / n)
        return torch.cat(parts, dim=1)

    def forward(self, image: Tensor, *, evidence: bool = False) -> dict[str, Tensor]:
        """Logits per task, ``z`` (dropout off), ``reconstruction``, the ``lesion`` logits
        ``[N, 1, H/4, W/4]`` when segmenting and, if asked, ``evidence``."""
        maps = self.encode(image)
        z = self.latent(maps)
        zd = self.dropout(z)
        out: dict[str, Tensor] = {t: head(zd) for t, head in self.heads.items()}
        out["z"] = z
        if self.decoder is not None:
            out.update(self._decode_outputs(maps[-1]))
        if evidence:
            out["evidence"] = self.evidence_from_levels(maps)
        return out

    def head(self, task: str) -> nn.Linear:
        """The linear head of ``task`` (``KeyError`` when the model has none)."""
        return cast(nn.Linear, self.heads[task])

    def _decode_outputs(self, bottleneck: Tensor) -> dict[str, Tensor]:
        """``reconstruction`` and/or ``lesion`` logits from one pass through the decoder."""
        assert self.decoder is not None
        *blocks, _upsample, conv, sigmoid = self.decoder
        out: dict[str, Tensor] = {}
        x = bottleneck
        for k, block in enumerate(blocks):
            x = block(x)
            if k == _LESION_BLOCK and self.lesion_head is not None:
                out["lesion"] = self.lesion_head(x)
                if not self.config.reconstruction:
                    return out
        out["reconstruction"] = sigmoid(upsample_conv_as_transpose(x, cast(nn.Conv2d, conv)))
        return out

    def decode(self, bottleneck: Tensor, *, reference: bool = False) -> Tensor:
        """The reconstruction from the bottleneck.

        The decoder's last step, nearest x2 upsampling then a 3x3 convolution, runs as one
        transposed convolution (:func:`upsample_conv_as_transpose`): the same function without
        the full-size upsampled tensor (measured: 1.2-1.4x the training images/s at heights 384
        and 1024, ``benchmarks/bench_training.py --reference-decoder``; ONNX Runtime's forward
        pass about a quarter faster at 2048).
        ``reference=True`` runs the layers literally, as the paper draws them.
        """
        if self.decoder is None:
            raise ValueError("this model has no decoder (reconstruction is switched off)")
        if reference:
            literal: Tensor = self.decoder(bottleneck)
            return literal
        *blocks, _upsample, conv, sigmoid = self.decoder
        x = bottleneck
        for block in blocks:
            x = block(x)
        fast: Tensor = sigmoid(upsample_conv_as_transpose(x, cast(nn.Conv2d, conv)))
        return fast

    # ------------------------------------------------------------------ evidence
    def evidence(self, image: Tensor) -> Tensor:
        """Malignancy evidence ``[N, 1, H/16, W/16]`` of an image batch."""
        return self.evidence_from_levels(self.encode(image))

    def evidence_from_levels(self, maps: Sequence[Tensor]) -> Tensor:
        """Per-location contributions to ``logit_malignant - logit_benign`` (dropout off).

        For level ``l`` with map ``F`` ``[C, h, w]``, pooled norm ``n`` and head weight
        difference ``d`` on that level's slice of ``z``: ``M[y, x] = sum_c d_c F[c, y, x] / (n h w)``.
        Finer levels are sum-pooled and coarser ones spread evenly onto the ``H/16`` grid, so
        ``evidence.sum() + (b_mal - b_ben)`` equals the logit difference.
        """
        if "malignancy" not in self.heads:
            raise ValueError("this model has no malignancy head, so no evidence map")
        head = self.head("malignancy")
        d_all = head.weight[1] - head.weight[0]
        total: Tensor | None = None
        offset = 0
        for i in self.fused_levels:
            fmap = maps[i]
            c = LEVEL_WIDTHS[i]
            d = d_all[offset : offset + c].view(1, c, 1, 1)
            offset += c
            _, n = self._pool(fmap)
            s = F.conv2d(fmap, d)  # sum_c d_c F[c]: one pass, where multiply-then-sum makes two
            # 1 / (h w) without reading shapes, so the W axis stays dynamic in ONNX
            area = torch.ones_like(s).sum(dim=(2, 3), keepdim=True)
            m = s / (n.view(-1, 1, 1, 1) * area)
            total = _to_evidence_grid(m, i) if total is None else total + _to_evidence_grid(m, i)
        assert total is not None
        return total


def _check_input(image: Tensor) -> None:
    shape = tuple(image.shape)
    if len(shape) != 4 or shape[1] != 1 or shape[2] % SIZE_MULTIPLE or shape[3] % SIZE_MULTIPLE or 0 in shape:
        raise ValueError(
            f"the network takes [N, 1, H, W] with H and W positive multiples of {SIZE_MULTIPLE}; got {list(shape)}"
        )


def _to_evidence_grid(m: Tensor, level: int) -> Tensor:
    """Move a level's contribution map onto the ``H/16`` grid, preserving its sum."""
    k = 2 ** abs(level - _EVIDENCE_LEVEL)
    if level < _EVIDENCE_LEVEL:
        return F.avg_pool2d(m, k) * float(k * k)
    if level > _EVIDENCE_LEVEL:
        return F.interpolate(m, scale_factor=float(k), mode="nearest") / float(k * k)
    return m


def _transposed_taps(w: Tensor) -> Tensor:
    """3 taps on the last axis -> the 4 taps of "nearest x2 upsampling, then that 3-tap convolution
    (padding 1)" written as one stride-2 transposed convolution (padding 1): output row ``2m``
    reads ``w0 x[m-1] + (w1 + w2) x[m]``, row ``2m+1`` reads ``(w0 + w1) x[m] + w2 x[m+1]``."""
    return torch.stack((w[..., 2], w[..., 1] + w[..., 2], w[..., 0] + w[..., 1], w[..., 0]), dim=-1)


def upsample_conv_as_transpose(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv(nearest_upsample_x2(x))`` for a 3x3, stride-1, padding-1 ``conv``, computed as one
    4x4 stride-2 transposed convolution of ``x`` whose kernel is derived from ``conv``'s: the same
    sums (up to rounding), 4/9 of the multiplications, no upsampled tensor, and the same
    gradients for ``conv``'s parameters. In an ONNX export the kernel derivation acts on the
    initializers only, so ONNX Runtime folds it when it loads the model."""
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.groups != 1:
        raise ValueError(f"only a 3x3, stride-1, padding-1 ungrouped convolution can be rewritten, not {conv}")
    k = _transposed_taps(_transposed_taps(conv.weight.transpose(-1, -2)).transpose(-1, -2))  # [out, in, 4, 4]
    return F.conv_transpose2d(x, k.transpose(0, 1), conv.bias, stride=2, padding=1)


def build_model(config: ModelConfig | None = None, seed: int | None = None) -> MammoNet:
    """A freshly initialised network (seeded when ``seed`` is given, without touching the global RNG)."""
    if seed is None:
        return MammoNet(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MammoNet(config)
