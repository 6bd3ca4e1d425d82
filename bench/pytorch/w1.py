#!/usr/bin/env python3
"""PyTorch CPU twin of workload W1 `ddpm-unet-s` (shared/WORKLOADS.md, configs/ddpm-unet-s.yaml):
one training step per call, as Loom's `loom bench train --config configs/ddpm-unet-s.yaml`.

Step: t ~ U{0..999}, ε ~ N(0, I), x_t = q_sample (linear betas 1e-4..0.02), loss = mean
(UNet(x_t, t) − ε)², AdamW lr 2e-4 wd 0, EMA 0.9999 (lerp). Batch 64 per process, synthetic
images 1x32x32.
    python bench/pytorch/w1.py --setup 1x2 --memory-format channels_last --steps 20 --warmup 3
"""
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

PARAMETERS = 1_623_169


def build(ctx):
    import torch
    import diffusion
    from unet import UNet
    model = UNet()
    n = sum(p.numel() for p in model.parameters())
    assert n == PARAMETERS, n
    model = model.to(memory_format=ctx.memory_format)
    ema = copy.deepcopy(model).requires_grad_(False)
    run = ctx.ddp(model)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.0)
    s = diffusion.Schedule()
    x0 = ctx.images(1, 32)
    B = ctx.batch
    params, shadows = list(model.parameters()), list(ema.parameters())

    def step():
        t = torch.randint(0, s.T, (B,))
        noise = torch.randn_like(x0)
        loss, _ = diffusion.training_loss(s, run, x0, t, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(shadows, params, 1 - 0.9999)
        return loss.detach()

    return step, f"{n:,} parameters"


if __name__ == "__main__":
    harness.main("W1 ddpm-unet-s", build, batch=64, port=29531)
