#!/usr/bin/env python3
"""PyTorch CPU twin of workload W2 `dit-s` (shared/WORKLOADS.md, configs/dit-s.yaml): one
training step per call, as Loom's `loom bench train --config configs/dit-s.yaml`.

Step: labels 0..9 cycling (as Loom's synthetic batch), label dropout 0.1 to the null class 10,
t ~ U{0..999}, ε ~ N(0, I), x_t = q_sample (linear betas 1e-4..0.02), loss = mean (DiT(x_t, t,
y) − ε)², AdamW lr 1e-4 wd 0, EMA 0.9999 (lerp). Batch 64 per process, synthetic images.
    python bench/pytorch/w2.py --setup 1x1 --memory-format channels_last --steps 20 --warmup 3
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

PARAMETERS = 4_167_568


def build(ctx):
    import diffusion
    from dit import DiT
    model = DiT()
    n = sum(p.numel() for p in model.parameters())
    assert n == PARAMETERS, n
    return diffusion.benchmark_step(ctx, model, lr=1e-4, classes=10), f"{n:,} parameters"


if __name__ == "__main__":
    harness.main("W2 dit-s", build, batch=64, port=29532)
