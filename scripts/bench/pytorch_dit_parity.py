#!/usr/bin/env python3
"""Loom's DiT against the reference architecture in PyTorch, on one checkpoint.

Usage: pytorch_dit_parity.py CKPT.h5 LOOM [--n 4]

Builds facebookresearch/DiT's `DiT` (models.py, transcribed below with timm's Attention and Mlp),
loads the checkpoint's /ema weights by their names (Loom uses the reference's), runs both on
the same random x_t, t and labels (Loom through the hidden `loom selftest forward`), and
prints the largest difference relative to the largest output. Needs torch, numpy and h5py.
"""
import math, subprocess, sys, tempfile, os
import h5py, numpy as np, torch, torch.nn as nn


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, freq=256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(freq, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.freq = freq

    def forward(self, t):
        half = self.freq // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class Attention(nn.Module):  # timm's
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = torch.softmax(q @ k.transpose(-2, -1) * (C // self.heads) ** -0.5, dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):  # timm's
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c):
        sm, scm, gm, sf, scf, gf = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gm.unsqueeze(1) * self.attn(modulate(self.norm1(x), sm, scm))
        return x + gf.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sf, scf))


class FinalLayer(nn.Module):
    def __init__(self, hidden, p, out):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, p * p * out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def pos_embed(d, g):
    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    grid = np.stack(np.meshgrid(np.arange(g, dtype=np.float32), np.arange(g, dtype=np.float32)), axis=0).reshape(2, 1, g, g)
    return np.concatenate([one(d // 2, grid[0]), one(d // 2, grid[1])], axis=1)


class DiT(nn.Module):
    def __init__(self, size, channels, p, hidden, depth, heads, mlp_ratio, classes, out):
        super().__init__()
        self.p, self.out = p, out
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Conv2d(channels, hidden, p, p)
        self.t_embedder = TimestepEmbedder(hidden)
        self.y_embedder = nn.Module()
        self.y_embedder.embedding_table = nn.Embedding(classes + 1, hidden)
        self.blocks = nn.ModuleList([DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden, p, out)
        self.register_buffer("pos", torch.from_numpy(pos_embed(hidden, size // p)).float()[None])

    def forward(self, x, t, y):
        x = self.x_embedder.proj(x).flatten(2).transpose(1, 2) + self.pos
        c = self.t_embedder(t) + self.y_embedder.embedding_table(y)
        for b in self.blocks:
            x = b(x, c)
        x = self.final_layer(x, c)
        n, g, p, o = x.shape[0], int(x.shape[1] ** 0.5), self.p, self.out
        x = x.reshape(n, g, g, p, p, o)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(n, o, g * p, g * p)


def main():
    ckpt, loom = sys.argv[1], sys.argv[2]
    n = int(sys.argv[sys.argv.index("--n") + 1]) if "--n" in sys.argv else 4
    with h5py.File(ckpt, "r") as f:
        weights = {k: np.array(v) for k, v in f["ema"].items()} if isinstance(f["ema"], h5py.Group) else {}
        if not weights or any(isinstance(f["ema"][k], h5py.Group) for k in f["ema"]):
            weights = {}
            f["ema"].visititems(lambda k, v: weights.__setitem__(k.replace("/", "."), np.array(v)) if isinstance(v, h5py.Dataset) else None)
    hidden = weights["x_embedder.weight"].shape[0]
    channels, p = weights["x_embedder.weight"].shape[1], weights["x_embedder.weight"].shape[2]
    depth = len({k.split(".")[1] for k in weights if k.startswith("blocks.")})
    classes = weights["y_embedder.weight"].shape[0] - 1
    out = weights["final_layer.linear.weight"].shape[0] // (p * p)
    mlp_ratio = weights["blocks.0.mlp.fc1.weight"].shape[0] / hidden
    heads = int(os.environ.get("DIT_HEADS", "3"))
    size = int(os.environ.get("DIT_SIZE", "32"))
    model = DiT(size, channels, p, hidden, depth, heads, mlp_ratio, classes, out)
    state = {k.replace("x_embedder.weight", "x_embedder.proj.weight").replace("x_embedder.bias", "x_embedder.proj.bias")
              .replace("y_embedder.weight", "y_embedder.embedding_table.weight"): torch.from_numpy(v) for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert [m for m in missing if m != "pos"] == [] and unexpected == [], (missing, unexpected)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, size, size, channels)).astype(np.float32)  # NHWC, as Loom
    t = rng.integers(0, 1000, n).astype(np.int64)
    y = rng.integers(0, classes + 1, n).astype(np.int64)
    with tempfile.TemporaryDirectory() as d:
        with h5py.File(d + "/in.h5", "w") as f:
            f["x"], f["t"], f["labels"] = x, t, y
        subprocess.run([loom, "selftest", "forward", ckpt, d + "/in.h5", d + "/out.h5"], check=True)
        with h5py.File(d + "/out.h5", "r") as f:
            got = np.array(f["output"])
    with torch.no_grad():
        want = model(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(t), torch.from_numpy(y)).permute(0, 2, 3, 1).numpy()
    rel = np.abs(got - want).max() / np.abs(want).max()
    print(f"DiT forward, {n} images, depth {depth}, hidden {hidden}, patch {p}: max |Loom − PyTorch| / max |PyTorch| = {rel:.2e}")
    sys.exit(0 if rel < 1e-4 else 1)


if __name__ == "__main__":
    main()
