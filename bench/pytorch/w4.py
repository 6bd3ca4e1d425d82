#!/usr/bin/env python3
"""PyTorch CPU twin of workload W4 `vae-kl-f4` (shared/WORKLOADS.md, configs/vae-kl-f4.yaml): one
training step per call, as Loom's `loom bench train --config configs/vae-kl-f4.yaml`.

Step: mean, log-variance = encoder(x) (clamped to [-30, 20]); z = mean + exp(logvar/2)·ε;
x̂ = decoder(z); loss = Σ|x − x̂|/B + 1e-6·KL/B; Adam (default betas), lr 4.5e-6 × global
batch; no EMA. Batch 32 per process, synthetic images 3x32x32.
    python bench/pytorch/w4.py --setup 1x1 --memory-format channels_last --steps 20 --warmup 3
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def build(ctx):
    import torch
    from autoencoder import PARAMETERS, KLAutoencoder
    model = KLAutoencoder()
    n = sum(p.numel() for p in model.parameters())
    assert n == PARAMETERS, n
    model = model.to(memory_format=ctx.memory_format)
    run = ctx.ddp(model)
    B = ctx.batch
    opt = torch.optim.Adam(model.parameters(), lr=4.5e-6 * B * ctx.world)
    x = ctx.images(3, 32)

    def step():
        eps = torch.randn(B, 4, 8, 8).contiguous(memory_format=ctx.memory_format)
        _, rec, kl, _, _ = run(x, eps)
        loss = rec + 1e-6 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step, f"{n:,} parameters"


if __name__ == "__main__":
    harness.main("W4 vae-kl-f4", build, batch=32, port=29534)
