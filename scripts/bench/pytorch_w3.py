#!/usr/bin/env python3
"""PyTorch CPU reference benchmark of workload W3 `dcgan-32` (shared/WORKLOADS.md).

One step = one D update then one G update, then the EMA of G:
  * D update: fake = G(z); D runs separately on the real batch and on fake.detach();
    loss = BCE(D(real), 1) + BCE(D(fake), 0); Adam step on D.
  * G update: reuses that step's fake batch; D's parameters have requires_grad False, so
    no D weight gradient is computed (and, with 2 processes, none is all-reduced);
    non-saturating loss BCE(D(fake), 1); Adam step on G.
  * EMA of G, decay 0.999: lerp of the parameters, copy of the BN running statistics.
Adam lr 2e-4, betas (0.5, 0.999) for both networks. Batch 64 per process. Init N(0, 0.02),
BN weight N(1, 0.02), BN bias 0. Convolutions feeding a BN have no bias.

Data is synthetic, as in Loom's `loom bench train`: one fixed batch of uniform [-1, 1]
images 3x32x32 per process (made before timing); z ~ N(0, 1) is drawn inside every step.

Set-ups (processes x threads):
  1x1  one process, torch.set_num_threads(1)
  1x2  one process, torch.set_num_threads(2)
  2x1  two processes (torch.multiprocessing.spawn, gloo on 127.0.0.1), 1 thread each,
       G and D wrapped in DistributedDataParallel; G's gradient is all-reduced in the G
       update, D's in the D update. In the G update, D is called through `D_ddp.module`
       (the bare module, with requires_grad False), so D's DDP reducer is not involved and
       no D gradient exists to all-reduce. broadcast_buffers=False by default: each
       process keeps its own BN running statistics (Loom does not all-reduce them either);
       pass --broadcast-buffers to have DDP broadcast rank 0's buffers at every forward.
  all  driver: runs 1x1, 1x2, 2x1 as child processes of this script, alternating, for
       --rounds rounds (one timed round per child), and prints the best round per set-up.

Output, one line per measured set-up:
    RESULT <setup> <images/s TOTAL for the set-up>
NOTE: the number on the RESULT line is the TOTAL images/s of the set-up (for 2x1: both
processes together). Loom's `loom bench train --only 2x1` prints images/s PER PROCESS on
its RESULT line instead (its driver doubles it); the per-process figure is printed here
on a separate `PERPROC` line. As in Loom, the per-process figure uses the slowest rank's
time (max over ranks), and total = per-process x processes. With --rounds N > 1 the best
round counts (as in Loom's driver); every round is printed.

Example:
    python scripts/bench/pytorch_w3.py --setup 1x1 --warmup 3 --steps 20 --rounds 2
    python scripts/bench/pytorch_w3.py --setup 2x1 --memory-format channels_last
    python scripts/bench/pytorch_w3.py --setup all --rounds 3
"""
import argparse
import copy
import os
import statistics
import subprocess
import sys
import time

SETUPS = ("1x1", "1x2", "2x1")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setup", choices=SETUPS + ("all",), default="1x1",
                   help="processes x threads, or 'all' to alternate the three")
    p.add_argument("--memory-format", choices=("contiguous", "channels_last"), default="contiguous")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=1, help="timed rounds; the best one counts")
    p.add_argument("--batch", type=int, default=64, help="batch per process (W3: 64)")
    p.add_argument("--adam", choices=("default", "foreach", "fused"), default="default",
                   help="torch.optim.Adam implementation (default: PyTorch's choice for CPU)")
    p.add_argument("--broadcast-buffers", action="store_true",
                   help="2x1: let DDP broadcast BN buffers from rank 0 at every forward")
    p.add_argument("--check-comm", action="store_true",
                   help="2x1: count DDP gradient all-reduces (buckets) per network and print them per step")
    p.add_argument("--port", type=int, default=29533, help="2x1: MASTER_PORT")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def split_setup(setup):
    procs, threads = (int(x) for x in setup.split("x"))
    return procs, threads


# --------------------------------------------------------------------------- models
def build_models(nn):
    G = nn.Sequential(
        nn.ConvTranspose2d(100, 256, 4, 1, 0, bias=False), nn.BatchNorm2d(256), nn.ReLU(True),
        nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(True),
        nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
        nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=True), nn.Tanh(),
    )
    D = nn.Sequential(
        nn.Conv2d(3, 64, 4, 2, 1, bias=True), nn.LeakyReLU(0.2, True),
        nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2, True),
        nn.Conv2d(128, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.LeakyReLU(0.2, True),
        nn.Conv2d(256, 1, 4, 1, 0, bias=True),  # logit, shape N,1,1,1
    )
    return G, D


def init_weights(torch, nn, module):
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                # WORKLOADS.md: "Init N(0, 0.02)" -- biases of the first/last convs too.
                nn.init.normal_(m.bias, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def count(module):
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- one process
def worker(rank, args, world, threads, result_queue=None):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    distributed = world > 1
    if distributed:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(args.port)
        dist.init_process_group("gloo", rank=rank, world_size=world)

    torch.manual_seed(args.seed)  # same init on every rank (DDP also broadcasts rank 0's)
    G, D = build_models(nn)
    init_weights(torch, nn, G)
    init_weights(torch, nn, D)
    nG, nD = count(G), count(D)
    if rank == 0:
        print(f"parameters G {nG:,} D {nD:,}", flush=True)
    assert nG == 1_068_931, nG
    assert nD == 663_361, nD

    mf = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    G = G.to(memory_format=mf)
    D = D.to(memory_format=mf)
    G_ema = copy.deepcopy(G).eval()
    for p in G_ema.parameters():
        p.requires_grad_(False)

    comm_calls = {"G": 0, "D": 0}
    if distributed:
        import inspect
        if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:
            ddp_kw = dict(forward_sync_buffers=args.broadcast_buffers)  # newer name
        else:
            ddp_kw = dict(broadcast_buffers=args.broadcast_buffers)
        G_run = DDP(G, **ddp_kw)
        D_run = DDP(D, **ddp_kw)
        if args.check_comm:
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

            def counting(name):
                def hook(state, bucket):
                    comm_calls[name] += 1
                    return allreduce_hook(state, bucket)
                return hook
            G_run.register_comm_hook(None, counting("G"))
            D_run.register_comm_hook(None, counting("D"))
    else:
        G_run, D_run = G, D
    D_bare = D  # used in the G update: no DDP reducer, no D gradient

    adam_kw = dict(lr=2e-4, betas=(0.5, 0.999))
    if args.adam == "foreach":
        adam_kw["foreach"] = True
    elif args.adam == "fused":
        adam_kw["fused"] = True
    optG = torch.optim.Adam(G.parameters(), **adam_kw)
    optD = torch.optim.Adam(D.parameters(), **adam_kw)

    B = args.batch
    gen = torch.Generator().manual_seed(1000 + rank)
    real = (torch.rand(B, 3, 32, 32, generator=gen) * 2 - 1).contiguous(memory_format=mf)
    ones = torch.ones(B, 1, 1, 1)
    zeros = torch.zeros(B, 1, 1, 1)
    g_params = list(G.parameters())
    g_ema_params = list(G_ema.parameters())
    g_bufs = list(G.buffers())
    g_ema_bufs = list(G_ema.buffers())
    d_params = list(D.parameters())
    decay = 0.999

    def step():
        # ---- D update
        z = torch.randn(B, 100, 1, 1).contiguous(memory_format=mf)
        fake = G_run(z)
        optD.zero_grad(set_to_none=True)
        c0 = dict(comm_calls)
        loss_real = F.binary_cross_entropy_with_logits(D_run(real), ones)
        loss_fake = F.binary_cross_entropy_with_logits(D_run(fake.detach()), zeros)
        (loss_real + loss_fake).backward()
        optD.step()
        c1 = dict(comm_calls)
        # ---- G update (same fake batch, D frozen: no D weight gradients)
        for p in d_params:
            p.requires_grad_(False)
        optG.zero_grad(set_to_none=True)
        loss_g = F.binary_cross_entropy_with_logits(D_bare(fake), ones)
        loss_g.backward()
        optG.step()
        for p in d_params:
            p.requires_grad_(True)
        if args.check_comm and rank == 0:
            print(f"all-reduce buckets: D update G {c1['G'] - c0['G']} D {c1['D'] - c0['D']}; "
                  f"G update G {comm_calls['G'] - c1['G']} D {comm_calls['D'] - c1['D']}", flush=True)
        # ---- EMA of G
        with torch.no_grad():
            torch._foreach_lerp_(g_ema_params, g_params, 1.0 - decay)
            for be, b in zip(g_ema_bufs, g_bufs):
                be.copy_(b)
        return loss_real.detach(), loss_fake.detach(), loss_g.detach()

    for _ in range(args.warmup):
        step()
    # sanity: no D gradient after the G update, G gradient present
    assert all(p.grad is not None for p in g_params)

    per_round = []
    for _ in range(args.rounds):
        if distributed:
            dist.barrier()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            losses = step()
        secs = time.perf_counter() - t0
        if distributed:
            t = torch.tensor([secs], dtype=torch.float64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)  # slowest rank, as Loom
            secs = t.item()
        per_round.append(args.steps * B / secs)

    if distributed:
        # check the replicas stayed identical (G and D params all-reduced every step)
        chk = torch.cat([p.detach().reshape(-1) for p in g_params + d_params])
        ref = chk.clone()
        dist.broadcast(ref, 0)
        same = torch.equal(chk, ref)
        flag = torch.tensor([0 if same else 1])
        dist.all_reduce(flag)
        if rank == 0 and flag.item() != 0:
            print("WARNING: replicas diverged", flush=True)

    if rank == 0:
        setup = f"{world}x{threads}"
        lr, lf, lg = (float(x) for x in losses)
        print(f"torch {torch.__version__}, setup {setup}, {args.memory_format}, adam {args.adam}, "
              f"batch {B}/process, warmup {args.warmup}, {args.rounds} round(s) x {args.steps} steps; "
              f"last losses D_real {lr:.3f} D_fake {lf:.3f} G {lg:.3f}", flush=True)
        for i, ips in enumerate(per_round, 1):
            print(f"round {i}: {ips:.1f} images/s per process, {ips * world:.1f} total", flush=True)
        best = max(per_round)
        if len(per_round) > 1:
            print(f"median round: {statistics.median(per_round) * world:.1f} images/s total", flush=True)
        print(f"PERPROC {setup} {best:.2f}", flush=True)
        # TOTAL images/s of the set-up (2x1: both processes together); Loom prints per process.
        print(f"RESULT {setup} {best * world:.2f}", flush=True)
        if result_queue is not None:
            result_queue.put(best * world)

    if distributed:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- driver
def run_all(args):
    """Alternate the three set-ups, one timed round per child process; best round counts."""
    best = {s: 0.0 for s in SETUPS}
    for r in range(1, args.rounds + 1):
        for s in SETUPS:
            cmd = [sys.executable, os.path.abspath(__file__), "--setup", s,
                   "--memory-format", args.memory_format, "--warmup", str(args.warmup),
                   "--steps", str(args.steps), "--rounds", "1", "--batch", str(args.batch),
                   "--adam", args.adam, "--port", str(args.port), "--seed", str(args.seed)]
            if args.broadcast_buffers:
                cmd.append("--broadcast-buffers")
            if args.check_comm:
                cmd.append("--check-comm")
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            line = next(l for l in out.splitlines() if l.startswith("RESULT"))
            total = float(line.split()[-1])
            best[s] = max(best[s], total)
            print(f"round {r} {s}: {total:.1f} images/s total", file=sys.stderr, flush=True)
    print(f"W3 dcgan-32, {args.memory_format}, batch {args.batch}/process, best of {args.rounds} rounds x {args.steps} steps")
    print("setup (procs x threads)   images/s total   per process")
    for s in SETUPS:
        procs, _ = split_setup(s)
        print(f"{s:<26}{best[s]:14.1f} {best[s] / procs:13.1f}")
    print(f"scaling efficiency 2x1 vs 1x1: {100 * best['2x1'] / (2 * best['1x1']):.1f} %")
    for s in SETUPS:
        print(f"RESULT {s} {best[s]:.2f}")  # TOTAL images/s


def main():
    args = parse_args()
    if args.setup == "all":
        run_all(args)
        return
    procs, threads = split_setup(args.setup)
    if procs == 1:
        worker(0, args, 1, threads)
    else:
        # children inherit these before they import torch
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ["MKL_NUM_THREADS"] = str(threads)
        import torch.multiprocessing as mp
        mp.spawn(worker, args=(args, procs, threads), nprocs=procs, join=True)


if __name__ == "__main__":
    main()
