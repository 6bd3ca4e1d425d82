#!/usr/bin/env python3
"""PyTorch CPU twin of workload W3 `dcgan-32` (shared/WORKLOADS.md, configs/dcgan-32.yaml): one
training step per call, as Loom's `loom bench train --config configs/dcgan-32.yaml`.

Step: z ~ N(0, I); fake = G(z); D update on the real batch and fake.detach() with
BCE-with-logits (real 1, fake 0), Adam step; G update reusing that fake batch with D frozen
(requires_grad off, and called without its DDP wrapper, so no D gradient is computed or
all-reduced), non-saturating loss BCE(D(fake), 1), Adam step; EMA of G 0.999 (lerp of the
parameters, copy of the BN running statistics). Adam lr 2e-4, betas (0.5, 0.999) for both.
Batch 64 per process, synthetic images 3x32x32. With 2 processes each keeps its own BN
statistics (broadcast_buffers off), as Loom.
    python bench/pytorch/w3.py --setup 2x1 --memory-format channels_last --steps 20 --warmup 3
"""
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def build(ctx):
    import torch
    import torch.nn.functional as F
    from dcgan import D_PARAMETERS, G_PARAMETERS, Discriminator, Generator
    G, D = Generator(), Discriminator()
    nG, nD = (sum(p.numel() for p in m.parameters()) for m in (G, D))
    assert (nG, nD) == (G_PARAMETERS, D_PARAMETERS), (nG, nD)
    G, D = G.to(memory_format=ctx.memory_format), D.to(memory_format=ctx.memory_format)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    G_run, D_run = ctx.ddp(G), ctx.ddp(D)
    optG = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optD = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = ctx.images(3, 32)
    B = ctx.batch
    ones, zeros = torch.ones(B), torch.zeros(B)
    g_params, ema_params = list(G.parameters()), list(G_ema.parameters())
    g_bufs, ema_bufs = list(G.buffers()), list(G_ema.buffers())
    d_params = list(D.parameters())

    def step():
        fake = G_run(torch.randn(B, 100))
        optD.zero_grad(set_to_none=True)
        d_loss = (F.binary_cross_entropy_with_logits(D_run(real), ones)
                  + F.binary_cross_entropy_with_logits(D_run(fake.detach()), zeros))
        d_loss.backward()
        optD.step()
        for p in d_params:
            p.requires_grad_(False)
        optG.zero_grad(set_to_none=True)
        g_loss = F.binary_cross_entropy_with_logits(D(fake), ones)
        g_loss.backward()
        optG.step()
        for p in d_params:
            p.requires_grad_(True)
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, g_params, 1 - 0.999)
            for e, b in zip(ema_bufs, g_bufs):
                e.copy_(b)
        return d_loss.detach()

    return step, f"G {nG:,} + D {nD:,} parameters"


if __name__ == "__main__":
    harness.main("W3 dcgan-32", build, batch=64, port=29533)
