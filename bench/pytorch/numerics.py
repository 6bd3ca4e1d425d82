#!/usr/bin/env python3
"""Loom's numbers against the PyTorch twins, workload by workload (W1 W2 W3 W4).

For each workload `loom selftest numerics CONFIG DIR` writes a checkpoint whose weights were
moved off their initial values, an input batch with every random draw of one training step,
and Loom's results (Sources/LoomCLI/SelfTest/SelfTestNumerics.swift). The twin loads the
checkpoint by name (strict: every key and shape must match), computes the same things in
float64 and compares:

    forward outputs, the step's metrics and batch-norm statistics   1e-4
    every gradient of one training step (per tensor)                1e-3
    diffusion: every schedule table                                 1e-9
    diffusion: trailing timesteps                                   exact
    diffusion: one step of DDPM, DDIM (η 0, 1), DPM-Solver++(2M)    1e-4

Each error is max |Loom − twin| / max |twin| over the tensor (absolute when the twin's is all
zero). Exit status 1 when any check fails. `--perturb NETWORK/NAME [--by F]` adds F (0.1) times
the tensor's largest magnitude to its first element in the twin after loading: the comparisons
that depend on it must then fail (scripts/compare-pytorch --numerics checks that they do).

    python bench/pytorch/numerics.py --loom .build/release/loom W1 W3
    python bench/pytorch/numerics.py --loom .build/release/loom W2 --perturb model/blocks.2.attn.qkv.weight
"""
import argparse
import copy
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion  # noqa: E402
from autoencoder import KLAutoencoder  # noqa: E402
from dcgan import Discriminator, Generator  # noqa: E402
from dit import DiT  # noqa: E402
from unet import UNet  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKLOADS = {
    "W1": ("configs/ddpm-unet-s.yaml", "diffusion", UNet),
    "W2": ("configs/dit-s.yaml", "diffusion", DiT),
    "W3": ("configs/dcgan-32.yaml", "gan", None),
    "W4": ("configs/vae-kl-f4.yaml", "vae", KLAutoencoder),
}
FORWARD, GRADIENT, SCHEDULE = 1e-4, 1e-3, 1e-9
DT = torch.float64


class Report:
    """Collects (workload, check, error, tolerance) rows and prints them as a table."""

    def __init__(self):
        self.rows = []

    def compare(self, workload, check, loom, twin, tol):
        loom = np.asarray(loom, dtype=np.float64)
        twin = np.asarray(twin.detach().numpy() if isinstance(twin, torch.Tensor) else twin, dtype=np.float64)
        if loom.shape != twin.shape:
            self.rows.append((workload, check, float("inf"), tol, f"shape {loom.shape} vs twin {twin.shape}"))
            return
        scale = np.abs(twin).max() if twin.size else 0.0
        diff = np.abs(loom - twin).max() if twin.size else 0.0
        err = diff / scale if scale > 0 else diff
        self.rows.append((workload, check, float(err), tol, ""))

    def exact(self, workload, check, loom, twin):
        same = list(np.asarray(loom).astype(np.int64)) == list(twin)
        self.rows.append((workload, check, 0.0 if same else float("inf"), 0.0, "" if same else f"{list(loom)[:8]} vs {list(twin)[:8]}"))

    def failures(self):
        return [r for r in self.rows if not r[2] <= r[3]]

    def print(self, verbose):
        groups = {}
        for w, check, err, tol, note in self.rows:
            key = (w, check.split("/")[0], tol)
            g = groups.setdefault(key, [0, 0.0, "", 0])
            g[0] += 1
            if err >= g[1]:
                g[1], g[2] = err, check
            g[3] += 0 if err <= tol else 1
        print(f"{'workload':<9}{'check':<22}{'n':>5}  {'worst error':>12}  {'tolerance':>9}  {'':<5} worst")
        for (w, kind, tol), (n, worst, where, bad) in groups.items():
            print(f"{w:<9}{kind:<22}{n:>5}  {worst:>12.2e}  {tol:>9.0e}  {'FAIL' if bad else 'ok':<5} {where}")
        for w, check, err, tol, note in self.rows:
            if verbose or not err <= tol:
                print(f"  {'FAIL' if not err <= tol else 'ok  '} {w} {check}: {err:.3e} (tolerance {tol:.0e}) {note}")


def nchw(a):
    return torch.as_tensor(np.asarray(a)).to(DT).permute(0, 3, 1, 2)


def nhwc(t):
    return t.permute(0, 2, 3, 1)


def load(module, group, perturb=None, network=""):
    """Loads a checkpoint group into `module` by name, strictly; `perturb` = (NETWORK/NAME, fraction)."""
    state = {}
    for name, d in group.items():
        v = torch.from_numpy(np.array(d))
        state[name] = v.to(torch.long) if name.endswith("num_batches_tracked") else v.to(DT)
    if perturb and perturb[0].split("/", 1)[0] == network:
        name = perturb[0].split("/", 1)[1]
        if name not in state:
            sys.exit(f"numerics: --perturb {perturb[0]}: /{network} has no tensor {name}")
        t = state[name]
        t.view(-1)[0] += perturb[1] * t.abs().max()
    module.load_state_dict(state, strict=True)
    return module.to(DT)


def run_loom(loom, config, folder, batch):
    r = subprocess.run([loom, "selftest", "numerics", os.path.join(ROOT, config), folder, "--batch", str(batch)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"numerics: {loom} selftest numerics {config} failed:\n{r.stdout}{r.stderr}")


def check_grads(report, w, loom_grads, module, network):
    for name, p in module.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        report.compare(w, f"gradient/{network}.{name}", loom_grads[network][name], g, GRADIENT)


def check_stats(report, w, after, module, network):
    for name, b in module.named_buffers():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            report.compare(w, f"statistics/{network}.{name}", np.array(after[network][name]), b, FORWARD)


# ----------------------------------------------------------------------------- diffusion

def check_diffusion(report, w, make, ck, inp, res, perturb):
    cfg = ck["meta/config"].asstr()[()]
    s = diffusion.Schedule()
    assert "timesteps: 1000" in cfg and "beta_start: 0.0001" in cfg and "beta_end: 0.02" in cfg, "W1/W2's linear schedule"
    for name in diffusion.Schedule.TABLES:
        report.compare(w, f"schedule/{name}", res["schedule"][name], getattr(s, name), SCHEDULE)
    for steps in (50, 7):
        report.exact(w, f"timesteps/trailing_{steps}", res["timesteps"][f"trailing_{steps}"], s.trailing(steps))

    model = load(make(), ck["model"], perturb, "model")
    x0 = nchw(inp["x"])
    t = torch.as_tensor(np.array(inp["t"]))
    noise = nchw(inp["noise"])
    y = torch.as_tensor(np.array(inp["step_labels"])) if "step_labels" in inp else None
    loss, out = diffusion.training_loss(s, model, x0, t, noise, y)
    report.compare(w, "forward/output", res["forward/output"], nhwc(out), FORWARD)
    loss.backward()
    report.compare(w, "metrics/loss", res["metrics/loss"][0], loss, FORWARD)
    check_grads(report, w, res["grad"], model, "model")

    ema = load(make(), ck["ema"], perturb, "ema").eval()
    x, z = nchw(inp["sample_x"]), nchw(inp["sample_noise"])
    kw = dict(clip=True)
    if "sample_labels" in inp:
        kw.update(labels=torch.as_tensor(np.array(inp["sample_labels"])), scale=float(inp.attrs["guidance"]),
                  null_class=ema.classes)
    ts = s.trailing(50)
    with torch.no_grad():
        steps = {
            "ddpm": diffusion.ddpm_step(s, ema, x, 999, 998, z, **kw),
            "ddpm_respaced": diffusion.ddpm_step(s, ema, x, ts[0], ts[1], z, **kw),
            "ddpm_last": diffusion.ddpm_step(s, ema, x, 0, -1, None, **kw),
            "ddim_eta0": diffusion.ddim_step(s, ema, x, ts[0], ts[1], 0.0, None, **kw),
            "ddim_eta1": diffusion.ddim_step(s, ema, x, ts[0], ts[1], 1.0, z, **kw),
        }
        first, history = diffusion.dpm_solver_step(s, ema, x, ts[0], ts[1], None, **kw)
        steps["dpm_solver_first"] = first
        # The second step starts from Loom's own first result, so each step is checked alone.
        steps["dpm_solver_second"], _ = diffusion.dpm_solver_step(s, ema, nchw(res["sampler/dpm_solver_first"]), ts[1], ts[2], history, **kw)
    for name, v in steps.items():
        report.compare(w, f"sampler/{name}", res["sampler"][name], nhwc(v), FORWARD)


# ----------------------------------------------------------------------------- W3

def check_gan(report, w, ck, inp, res, perturb):
    G = load(Generator(), ck["generator"], perturb, "generator")
    D = load(Discriminator(), ck["discriminator"], perturb, "discriminator")
    G_ema = load(Generator(), ck["generator_ema"], perturb, "generator_ema")
    real, z = nchw(inp["x"]), torch.as_tensor(np.array(inp["z"])).to(DT)
    with torch.no_grad():  # training-mode outputs on copies (their running statistics change)
        g, d = copy.deepcopy(G), copy.deepcopy(D)
        fake = g(z)
        report.compare(w, "forward/fake", res["forward/fake"], nhwc(fake), FORWARD)
        report.compare(w, "forward/d_real", res["forward/d_real"], d(real), FORWARD)
        report.compare(w, "forward/d_fake", res["forward/d_fake"], d(fake), FORWARD)
        report.compare(w, "forward/fake_ema", res["forward/fake_ema"], nhwc(G_ema.eval()(z)), FORWARD)

    # Loom's step: D on real and fake.detach(), Adam on D; G's loss through the updated D
    # (frozen), Adam on G; EMA of G (lerp, BN statistics copied).
    optD = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
    fake = G(z)
    out_real, out_fake = D(real), D(fake.detach())
    ones, zeros = torch.ones_like(out_real), torch.zeros_like(out_real)
    d_loss = F.binary_cross_entropy_with_logits(out_real, ones) + F.binary_cross_entropy_with_logits(out_fake, zeros)
    d_loss.backward()
    check_grads(report, w, res["grad"], D, "discriminator")
    optD.step()
    D.requires_grad_(False)
    g_loss = F.binary_cross_entropy_with_logits(D(fake), ones)
    g_loss.backward()
    check_grads(report, w, res["grad"], G, "generator")
    m = res["metrics"]
    report.compare(w, "metrics/d_loss", m["d_loss"][0], d_loss, FORWARD)
    report.compare(w, "metrics/g_loss", m["g_loss"][0], g_loss, FORWARD)
    report.compare(w, "metrics/d_real", m["d_real"][0], out_real.sigmoid().mean(), FORWARD)
    report.compare(w, "metrics/d_fake", m["d_fake"][0], out_fake.sigmoid().mean(), FORWARD)
    with torch.no_grad():
        for e, b in zip(G_ema.buffers(), G.buffers()):
            e.copy_(b)
    check_stats(report, w, res["after"], G, "generator")
    check_stats(report, w, res["after"], D, "discriminator")
    check_stats(report, w, res["after"], G_ema, "generator_ema")


# ----------------------------------------------------------------------------- W4

def check_vae(report, w, ck, inp, res, perturb):
    model = load(KLAutoencoder(), ck["model"], perturb, "model")
    x, eps = nchw(inp["x"]), nchw(inp["eps"])
    recon, rec, kl, mean, logvar = model(x, eps)
    report.compare(w, "forward/mean", res["forward/mean"], nhwc(mean), FORWARD)
    report.compare(w, "forward/log_variance", res["forward/log_variance"], nhwc(logvar), FORWARD)
    report.compare(w, "forward/reconstruction", res["forward/reconstruction"], nhwc(recon), FORWARD)
    loss = rec + 1e-6 * kl
    loss.backward()
    m = res["metrics"]
    report.compare(w, "metrics/loss", m["loss"][0], loss, FORWARD)
    report.compare(w, "metrics/rec", m["rec"][0], rec, FORWARD)
    report.compare(w, "metrics/kl", m["kl"][0], kl, FORWARD)
    check_grads(report, w, res["grad"], model, "model")


def main():
    p = argparse.ArgumentParser(description="Loom's numbers against the PyTorch twins.")
    p.add_argument("workloads", nargs="*", default=list(WORKLOADS), help="W1 W2 W3 W4 (default: all)")
    p.add_argument("--loom", default=os.path.join(ROOT, ".build/release/loom"), help="the loom binary")
    p.add_argument("--batch", type=int, default=8, help="images per batch (default 8)")
    p.add_argument("--perturb", metavar="NETWORK/NAME", help="change one weight in the twin (the checks must fail)")
    p.add_argument("--by", type=float, default=0.1, metavar="FRACTION",
                   help="--perturb adds FRACTION × the tensor's largest magnitude to its first element (default 0.1)")
    p.add_argument("--keep", metavar="DIR", help="keep Loom's files in DIR/<workload>")
    p.add_argument("--verbose", action="store_true", help="print every comparison")
    args = p.parse_args()
    unknown = [x for x in args.workloads if x.upper() not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload {', '.join(unknown)} (W1 W2 W3 W4)")
    if not os.access(args.loom, os.X_OK):
        p.error(f"--loom {args.loom}: no such executable (build it with scripts/setup)")
    torch.set_num_threads(1)
    perturb = (args.perturb, args.by) if args.perturb else None
    report = Report()
    with tempfile.TemporaryDirectory() as tmp:
        for w in (x.upper() for x in args.workloads):
            config, kind, make = WORKLOADS[w]
            folder = os.path.join(args.keep or tmp, w)
            run_loom(args.loom, config, folder, args.batch)
            with h5py.File(os.path.join(folder, "checkpoint.h5"), "r") as ck, \
                    h5py.File(os.path.join(folder, "inputs.h5"), "r") as inp, \
                    h5py.File(os.path.join(folder, "loom.h5"), "r") as res:
                if kind == "diffusion":
                    check_diffusion(report, w, make, ck, inp, res, perturb)
                elif kind == "gan":
                    check_gan(report, w, ck, inp, res, perturb)
                else:
                    check_vae(report, w, ck, inp, res, perturb)
    report.print(args.verbose)
    bad = report.failures()
    n = len(report.rows)
    print(f"numerics: {len(bad)} of {n} comparisons out of tolerance" if bad else f"numerics: all {n} comparisons within tolerance")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
