"""Training throughput on this CPU: images per second of full training steps (forward, the
multi-task loss, backward, Adam) at several input heights.

    python benchmarks/bench_training.py [--heights 512,1024] [--batch-size 4] [--steps 3] [--threads N]
                                        [--reference-decoder]

Images are random arrays of a typical preprocessed shape (width = 5/8 of the height, rounded up
to a multiple of 64, as a cropped breast); the first step is a warm-up and is not counted.
``--reference-decoder`` also times the decoder's last step as the literal upsample-then-convolve
layers (``MammoNet.decode(..., reference=True)``) instead of the model's transposed convolution.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from functools import partial

import numpy as np
import torch

from inference.formats import TASK_CLASSES
from training.augment import Augment
from training.loss import TaskTargets, multitask_loss
from training.model import MammoNet, ModelConfig, build_model


def bench(height: int, batch_size: int, steps: int, augment: bool = True, reference_decoder: bool = False) -> float:
    width = int(math.ceil(height * 5 / 8 / 64) * 64)
    model = build_model(ModelConfig(), seed=0)
    if reference_decoder:
        model.decode = partial(MammoNet.decode, model, reference=True)  # type: ignore[method-assign]  # deliberately swaps the bound method to time the literal layers
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    base = rng.random((batch_size, height, width)).astype(np.float32)
    targets = {t: TaskTargets(torch.zeros(batch_size, dtype=torch.int64), torch.ones(batch_size)) for t in TASK_CLASSES}
    aug = Augment()
    elapsed = 0.0
    for step in range(steps + 1):
        t0 = time.perf_counter()
        arrays = np.stack([aug(a, rng) for a in base]) if augment else base
        x = torch.from_numpy(arrays[:, None])
        loss, _ = multitask_loss(model(x), x, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step:
            elapsed += time.perf_counter() - t0
    return steps * batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heights", default="512,1024")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--reference-decoder", action="store_true", help="also time the literal upsample+conv last step"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs, "
        f"load average {load:.1f}"
    )
    for h in (int(v) for v in args.heights.split(",")):
        ips = bench(h, args.batch_size, args.steps)
        print(f"height {h:5d}: {ips:6.2f} training images/s (batch {args.batch_size}), {3600 * ips:8.0f} images/hour")
        if args.reference_decoder:
            ref = bench(h, args.batch_size, args.steps, reference_decoder=True)
            print(
                f"      literal upsample+conv last step: {ref:6.2f} images/s (the model's own is {ips / ref:.2f}x that)"
            )


if __name__ == "__main__":
    main()
