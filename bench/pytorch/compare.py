#!/usr/bin/env python3
"""The driver of scripts/compare-pytorch: Loom's `loom bench train --only SETUP` and the PyTorch
twin of each workload (NCHW, then channels_last), alternating within each round and set-up,
every process under /usr/bin/time for its peak resident memory; then one Markdown table.

    python bench/pytorch/compare.py --loom .build/release/loom --python VENV/bin/python W1 W3
"""
import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = {  # config, twin, what the step is
    "W1": ("configs/ddpm-unet-s.yaml", "w1.py", "ddpm-unet-s, batch 64/process"),
    "W2": ("configs/dit-s.yaml", "w2.py", "dit-s, batch 64/process"),
    "W3": ("configs/dcgan-32.yaml", "w3.py", "dcgan-32, batch 64/process"),
    "W4": ("configs/vae-kl-f4.yaml", "w4.py", "vae-kl-f4, batch 32/process"),
}
SETUPS = ("1x1", "1x2", "2x1")
FORMATS = ("contiguous", "channels_last")
TIME = "/usr/bin/time"


def cpu_line():
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                info.setdefault(k, v)
    flags = info.get("flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}), "
            f"{os.cpu_count()} cores, {isa}")


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(cmd, env=None):
    """Runs `cmd` (under /usr/bin/time when present); returns its stdout and peak RSS in MB of
    its largest process (time reports the maximum over the waited-for process tree)."""
    full = [TIME, "-f", "LOOMTIME_MAXRSS %M"] + cmd if os.access(TIME, os.X_OK) else cmd
    for attempt in (1, 2):  # one retry: a crash at exit (seen once in gloo's teardown) loses no run
        r = subprocess.run(full, capture_output=True, text=True, env=env, cwd=ROOT)
        if r.returncode == 0:
            break
        print(f"compare-pytorch: {' '.join(cmd)} failed (exit {r.returncode}), attempt {attempt}:\n{r.stdout}{r.stderr}",
              file=sys.stderr)
    else:
        sys.exit(f"compare-pytorch: {' '.join(cmd)} failed twice")
    m = re.findall(r"LOOMTIME_MAXRSS (\d+)", r.stderr)
    return r.stdout, (int(m[-1]) / 1024.0 if m else None)


def result(out, key, setup):
    m = re.search(rf"^{key} {setup} ([0-9.eE+-]+)$", out, re.M)
    if not m:
        sys.exit(f"compare-pytorch: no '{key} {setup}' line in:\n{out}")
    return float(m.group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workloads", nargs="*", default=list(WORKLOADS))
    p.add_argument("--loom", required=True)
    p.add_argument("--python", default=sys.executable, help="the interpreter with torch")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()
    for name in ("rounds", "steps"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1")
    bad = [w for w in a.workloads if w.upper() not in WORKLOADS]
    if bad:
        p.error(f"unknown workload {', '.join(bad)} (W1 W2 W3 W4)")
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        sys.exit("compare-pytorch: mpirun is not on PATH (openmpi-bin; scripts/setup installs it)")
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    torch_version = subprocess.run([a.python, "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True).stdout.strip()
    began, load_before = datetime.datetime.now(datetime.timezone.utc), load()
    common = ["--steps", str(a.steps), "--warmup", str(a.warmup)]

    best, rss, done = {}, {}, []
    for w in (x.upper() for x in a.workloads):
        config, twin, _ = WORKLOADS[w]
        if not os.path.exists(os.path.join(ROOT, config)):
            print(f"compare-pytorch: {w} skipped: Loom has no {config} yet", file=sys.stderr)
            continue
        if not os.path.exists(os.path.join(HERE, twin)):
            print(f"compare-pytorch: {w} skipped: no PyTorch twin bench/pytorch/{twin}", file=sys.stderr)
            continue
        done.append(w)
        for r in range(1, a.rounds + 1):
            for setup in SETUPS:
                loom = [a.loom, "bench", "train", "--config", config, "--only", setup] + common
                if setup == "2x1":
                    loom = [mpirun] + root + ["-np", "2", "-x", "OMP_NUM_THREADS", "-x", "OPENBLAS_NUM_THREADS"] + loom
                out, mb = run(loom, env)
                ips = result(out, "RESULT", setup) * (2 if setup == "2x1" else 1)  # Loom prints per process
                line = [f"{w} round {r} {setup}: loom {ips:.1f}"]
                for impl, value, memory in [("loom", ips, mb)] + [
                        (fmt, *twin_run(a.python, twin, setup, fmt, common)) for fmt in FORMATS]:
                    key = (w, setup, impl)
                    best[key] = max(best.get(key, 0.0), value)
                    if memory is not None:
                        rss[key] = max(rss.get(key, 0.0), memory)
                    if impl != "loom":
                        line.append(f"{impl} {value:.1f}")
                print(", ".join(line), file=sys.stderr, flush=True)

    if not done:
        sys.exit("compare-pytorch: no workload to compare")
    print(f"CPU: {cpu_line()}")
    print(f"{began:%Y-%m-%d %H:%M} UTC; torch {torch_version}; load average {load_before} before, {load()} after; "
          f"best of {a.rounds} rounds × {a.steps} steps ({a.warmup} warm-up), Loom and PyTorch alternating")
    print()
    print("| workload | set-up | Loom images/s | PyTorch NCHW | PyTorch channels_last | Loom / best PyTorch "
          "| peak RSS per process, MB: Loom | PyTorch NCHW | PyTorch channels_last |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w in done:
        for setup in SETUPS:
            l, c, cl = (best[(w, setup, i)] for i in ("loom", "contiguous", "channels_last"))
            mem = [rss.get((w, setup, i)) for i in ("loom", "contiguous", "channels_last")]
            mems = " | ".join("—" if m is None else f"{m:.0f}" for m in mem)
            print(f"| {w} | {setup} | {l:.1f} | {c:.1f} | {cl:.1f} | {l / max(c, cl):.2f}× | {mems} |")
    print()
    print("images/s: the whole set-up (2x1: both processes); the Loom config and twin of each workload: "
          + "; ".join(f"{w} {WORKLOADS[w][0]} and bench/pytorch/{WORKLOADS[w][1]} ({WORKLOADS[w][2]})" for w in done))


def twin_run(python, twin, setup, fmt, common):
    out, mb = run([python, "-W", "ignore", os.path.join(HERE, twin), "--setup", setup, "--memory-format", fmt] + common)
    return result(out, "RESULT", setup), mb


if __name__ == "__main__":
    main()
