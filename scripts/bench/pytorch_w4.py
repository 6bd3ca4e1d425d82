#!/usr/bin/env python3
"""PyTorch CPU reference benchmark of workload W4 `vae-kl-f4` (shared/WORKLOADS.md).

The KL autoencoder of latent diffusion's first stage, written as latent diffusion's
`ldm/modules/diffusionmodules/model.py` Encoder/Decoder reduced to W4's shapes:
  encoder: conv3x3(3->64); level 1: ResBlock(64), conv3x3 s2 p1 -> 16x16; level 2:
           ResBlock(64->128), conv3x3 s2 p1 -> 8x8; ResBlock(128); GN, SiLU, conv3x3(128->8)
  decoder: conv3x3(4->128); ResBlock(128); nearest x2 + conv3x3(128), ResBlock(128->64);
           nearest x2 + conv3x3(64), ResBlock(64); GN, SiLU, conv3x3(64->3)
  ResBlock = GN, SiLU, conv3x3, GN, SiLU, conv3x3 (+ 1x1 conv on the skip when the width
  changes); GroupNorm(32 groups, eps 1e-6); PyTorch default init. 1,475,979 parameters.
One step: moments = enc(x); mean, logvar = chunk(2); logvar clamped to [-30, 20];
z = mean + exp(logvar/2) * randn; x_hat = dec(z); loss = sum|x - x_hat| / B
+ 1e-6 * 0.5 * sum(mean^2 + var - 1 - logvar) / B; Adam (default betas), lr 4.5e-6 x global
batch; no EMA. Batch 32 per process; synthetic data (one fixed uniform [-1, 1] batch per
process, as Loom's `loom bench train`).

Set-ups (processes x threads): 1x1, 1x2, 2x1 (torch.multiprocessing.spawn, gloo on
127.0.0.1, DistributedDataParallel). Output: `RESULT <setup> <images/s TOTAL>` (Loom's
`--only 2x1` prints per process; bench-vs-pytorch doubles it) and `PERPROC <setup> <per process>`.
    python scripts/bench/pytorch_w4.py --setup 1x1 --warmup 3 --steps 20
"""
import argparse
import os
import time

SETUPS = ("1x1", "1x2", "2x1")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setup", choices=SETUPS, default="1x1")
    p.add_argument("--memory-format", choices=("contiguous", "channels_last"), default="contiguous")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=32, help="batch per process (W4: 32)")
    p.add_argument("--port", type=int, default=29534)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def build(torch, nn):
    def norm(c):
        return nn.GroupNorm(32, c, eps=1e-6)

    class ResBlock(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, 1, 1)
            self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, 1, 1)
            self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

        def forward(self, x):
            F = nn.functional
            h = self.conv1(F.silu(self.norm1(x)))
            h = self.conv2(F.silu(self.norm2(h)))
            return (self.nin_shortcut(x) if self.nin_shortcut is not None else x) + h

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_in = nn.Conv2d(3, 64, 3, 1, 1)
            self.block1, self.down1 = ResBlock(64, 64), nn.Conv2d(64, 64, 3, 2, 1)
            self.block2, self.down2 = ResBlock(64, 128), nn.Conv2d(128, 128, 3, 2, 1)
            self.mid = ResBlock(128, 128)
            self.norm_out, self.conv_out = norm(128), nn.Conv2d(128, 8, 3, 1, 1)

        def forward(self, x):
            h = self.down1(self.block1(self.conv_in(x)))
            h = self.down2(self.block2(h))
            return self.conv_out(nn.functional.silu(self.norm_out(self.mid(h))))

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_in = nn.Conv2d(4, 128, 3, 1, 1)
            self.mid = ResBlock(128, 128)
            self.up2, self.block2 = nn.Conv2d(128, 128, 3, 1, 1), ResBlock(128, 64)
            self.up1, self.block1 = nn.Conv2d(64, 64, 3, 1, 1), ResBlock(64, 64)
            self.norm_out, self.conv_out = norm(64), nn.Conv2d(64, 3, 3, 1, 1)

        def forward(self, z):
            F = nn.functional
            h = self.mid(self.conv_in(z))
            h = self.block2(self.up2(F.interpolate(h, scale_factor=2.0, mode="nearest")))
            h = self.block1(self.up1(F.interpolate(h, scale_factor=2.0, mode="nearest")))
            return self.conv_out(F.silu(self.norm_out(h)))

    class AutoencoderKL(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = Encoder(), Decoder()

        def forward(self, x):
            mean, logvar = self.encoder(x).chunk(2, dim=1)
            logvar = logvar.clamp(-30.0, 20.0)
            z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum()
            return self.decoder(z), kl

    return AutoencoderKL()


def worker(rank, args, world, threads):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch
    import torch.nn as nn
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    distributed = world > 1
    if distributed:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(args.port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(args.seed)
    model = build(torch, nn)
    n = sum(p.numel() for p in model.parameters())
    assert n == 1_475_979, n
    mf = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=mf)
    run = DDP(model) if distributed else model
    B = args.batch
    opt = torch.optim.Adam(model.parameters(), lr=4.5e-6 * B * world)
    gen = torch.Generator().manual_seed(1000 + rank)
    x = (torch.rand(B, 3, 32, 32, generator=gen) * 2 - 1).contiguous(memory_format=mf)

    def step():
        opt.zero_grad(set_to_none=True)
        recon, kl = run(x)
        loss = (x - recon).abs().sum() / B + 1e-6 * kl / B
        loss.backward()
        opt.step()
        return loss.detach()

    for _ in range(args.warmup):
        step()
    if distributed:
        dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    secs = time.perf_counter() - t0
    if distributed:
        t = torch.tensor([secs], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # slowest rank, as Loom
        secs = t.item()
    ips = args.steps * B / secs
    if rank == 0:
        setup = f"{world}x{threads}"
        print(f"torch {torch.__version__}, W4 vae-kl-f4, setup {setup}, {args.memory_format}, {n:,} parameters, "
              f"batch {B}/process, last loss {float(loss):.2f}", flush=True)
        print(f"PERPROC {setup} {ips:.2f}", flush=True)
        print(f"RESULT {setup} {ips * world:.2f}", flush=True)
    if distributed:
        dist.destroy_process_group()


def main():
    args = parse_args()
    procs, threads = (int(v) for v in args.setup.split("x"))
    if procs == 1:
        worker(0, args, 1, threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch.multiprocessing as mp
        mp.spawn(worker, args=(args, procs, threads), nprocs=procs, join=True)


if __name__ == "__main__":
    main()
