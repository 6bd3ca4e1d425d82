"""The timing and DDP harness every PyTorch twin's training-step benchmark shares.

A twin's script defines `build(ctx)`, which makes the networks, optimizers and one fixed
synthetic batch and returns the step function, and calls `main(...)`. The harness does the
rest, the same way for every workload:

  * set-ups (processes x threads): `1x1`, `1x2` (one process, torch.set_num_threads), `2x1`
    (two processes from torch.multiprocessing.spawn, 1 thread each, gloo on 127.0.0.1,
    networks wrapped by `ctx.ddp(module)` in DistributedDataParallel);
  * memory format `contiguous` (NCHW) or `channels_last` (`ctx.memory_format`);
  * warm-up steps, then timed steps; with several ranks the slowest rank's time counts, as in
    Loom's `loom bench train`; with --rounds N the best round counts;
  * output lines read by scripts/compare-pytorch:
        RESULT <setup> <images/s TOTAL of the set-up (2x1: both processes)>
        PERPROC <setup> <images/s per process>
        PEAKRSS <setup> <peak resident set size of the largest process, MB>
    (Loom's `loom bench train --only 2x1` prints images/s PER PROCESS on its RESULT line.)
"""
import argparse
import os
import resource
import sys
import time

SETUPS = ("1x1", "1x2", "2x1")


class Context:
    """What `build` gets: torch, this rank, the world size, the arguments, the memory format."""

    def __init__(self, torch, rank, world, args):
        self.torch, self.rank, self.world, self.args = torch, rank, world, args
        self.batch = args.batch
        self.memory_format = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
        self.distributed = world > 1

    def ddp(self, module):
        """`module` in DistributedDataParallel with 2 processes, as it is with one."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP
        # Each rank keeps its own buffers (BN statistics), as Loom does.
        return DDP(module, broadcast_buffers=False)

    def images(self, channels, size):
        """One fixed batch of uniform [-1, 1] images per rank, in the memory format (as Loom's
        `loom bench train`, which measures on synthetic data)."""
        torch = self.torch
        gen = torch.Generator().manual_seed(1000 + self.rank)
        x = torch.rand(self.batch, channels, size, size, generator=gen) * 2 - 1
        return x.contiguous(memory_format=self.memory_format)


def parse_args(description, batch, port, argv=None):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--setup", choices=SETUPS, default="1x1", help="processes x threads")
    p.add_argument("--memory-format", choices=("contiguous", "channels_last"), default="contiguous")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=1, help="timed rounds; the best one counts")
    p.add_argument("--batch", type=int, default=batch, help=f"batch per process (default {batch}, the workload's)")
    p.add_argument("--port", type=int, default=port, help="2x1: MASTER_PORT on 127.0.0.1")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("warmup", "steps", "rounds", "batch"):
        low = 0 if name == "warmup" else 1
        if getattr(args, name) < low:
            p.error(f"--{name} must be at least {low}, got {getattr(args, name)}")
    return args


def peak_rss_mb():
    """This process's peak resident set size in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker(rank, world, threads, args, build, title):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    dist = None
    if world > 1:
        import torch.distributed as dist
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(args.port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP broadcasts rank 0's too)
    ctx = Context(torch, rank, world, args)
    step, info = build(ctx)

    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.rounds):
        if dist:
            dist.barrier()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            last = step()
        seconds = time.perf_counter() - t0
        if dist:
            t = torch.tensor([seconds], dtype=torch.float64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)  # the slowest rank, as Loom
            seconds = t.item()
        rates.append(args.steps * args.batch / seconds)
    rss = torch.tensor([peak_rss_mb()], dtype=torch.float64)
    if dist:
        dist.all_reduce(rss, op=dist.ReduceOp.MAX)
    if rank == 0:
        setup = f"{world}x{threads}"
        print(f"torch {torch.__version__}, {title}, setup {setup}, {args.memory_format}, {info}, "
              f"batch {args.batch}/process, warmup {args.warmup}, {args.rounds} x {args.steps} steps, "
              f"last loss {float(last):.4g}", flush=True)
        for i, r in enumerate(rates, 1):
            print(f"round {i}: {r:.1f} images/s per process, {r * world:.1f} total", flush=True)
        best = max(rates)
        print(f"PERPROC {setup} {best:.2f}", flush=True)
        print(f"RESULT {setup} {best * world:.2f}", flush=True)
        print(f"PEAKRSS {setup} {rss.item():.0f}", flush=True)
    if dist:
        dist.barrier()  # no rank leaves while another is still in a collective (gloo aborts then)
        dist.destroy_process_group()


def main(title, build, batch, port, argv=None):
    """Parses the command line and runs `build`'s step in the chosen set-up."""
    args = parse_args(title, batch, port, argv)
    procs, threads = (int(v) for v in args.setup.split("x"))
    if procs == 1:
        _worker(0, 1, threads, args, build, title)
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before the children import torch
    import torch.multiprocessing as mp
    mp.spawn(_worker, args=(procs, threads, args, build, title), nprocs=procs, join=True)
