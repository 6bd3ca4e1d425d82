#!/usr/bin/env python3
"""PyTorch CPU twin of workload W1 `ddpm-unet-s` (shared/WORKLOADS.md, configs/ddpm-unet-s.yaml):
one training step per call, as Loom's `loom bench train --config configs/ddpm-unet-s.yaml`.

Step: t ~ U{0..999}, ε ~ N(0, I), x_t = q_sample (linear betas 1e-4..0.02), loss = mean
(UNet(x_t, t) − ε)², AdamW lr 2e-4 wd 0, EMA 0.9999 (lerp). Batch 64 per process, synthetic
images 1x32x32.
    python bench/pytorch/w1.py --setup 1x2 --memory-format channels_last --steps 20 --warmup 3
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

PARAMETERS = 1_623_169


def build(ctx):
    import diffusion
    from unet import UNet
    model = UNet()
    n = sum(p.numel() for p in model.parameters())
    assert n == PARAMETERS, n
    return diffusion.benchmark_step(ctx, model, lr=2e-4), f"{n:,} parameters"


if __name__ == "__main__":
    harness.main("W1 ddpm-unet-s", build, batch=64, port=29531)
