"""W2's network in PyTorch: the DiT of facebookresearch/DiT (`models.py`, with timm's Attention
and Mlp), under Loom's state-dict names so a Loom checkpoint loads by name alone.

Loom's names are the reference's except two modules that Loom keeps flat:
    Loom / this twin                 facebookresearch/DiT
    x_embedder.weight, .bias         x_embedder.proj.weight, .bias   (timm PatchEmbed's conv)
    y_embedder.weight                y_embedder.embedding_table.weight
Everything else is the same (`t_embedder.mlp.0.weight`, `blocks.3.attn.qkv.weight`,
`blocks.3.adaLN_modulation.1.weight`, `final_layer.linear.weight` …). The fixed 2-D sin-cos
positions are a buffer that is not saved (the reference keeps them as a frozen parameter).
Inputs and outputs are NCHW here; Loom's tensors are NHWC.
"""
import numpy as np
import torch
import torch.nn as nn

from diffusion import timestep_features

REFERENCE_NAMES = {  # Loom's name prefix -> facebookresearch/DiT's
    "x_embedder.": "x_embedder.proj.",
    "y_embedder.": "y_embedder.embedding_table.",
}


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, frequencies=256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequencies, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.frequencies = frequencies

    def forward(self, t):
        w = self.mlp[0].weight
        return self.mlp(timestep_features(t, self.frequencies).to(w.dtype))


class Attention(nn.Module):  # timm's
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = torch.softmax((q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5, dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):  # timm's, GELU(tanh)
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
    def __init__(self, hidden, patch, out):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch * patch * out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def sincos_positions(dim, grid):
    """The reference's get_2d_sincos_pos_embed: [grid², dim], the first half encodes the column."""
    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    g = np.stack(np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64)), axis=0)
    g = g.reshape(2, 1, grid, grid)
    return np.concatenate([one(dim // 2, g[0]), one(dim // 2, g[1])], axis=1)


class DiT(nn.Module):
    """W2 by default: 32x32x1, patch 4, hidden 192, depth 6, 3 heads, MLP ratio 4, 10 classes."""

    def __init__(self, image_size=32, in_channels=1, patch=4, hidden=192, depth=6, heads=3, mlp_ratio=4.0,
                 classes=10, learn_sigma=False):
        super().__init__()
        self.patch, self.out_channels, self.classes = patch, in_channels * (2 if learn_sigma else 1), classes
        self.x_embedder = nn.Conv2d(in_channels, hidden, patch, patch)
        self.t_embedder = TimestepEmbedder(hidden)
        self.y_embedder = nn.Embedding(classes + 1, hidden) if classes > 0 else None
        self.blocks = nn.ModuleList([DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden, patch, self.out_channels)
        pos = torch.from_numpy(sincos_positions(hidden, image_size // patch)).float()[None]
        self.register_buffer("pos_embed", pos, persistent=False)
        self.initialize_weights()

    def initialize_weights(self):
        """The reference's initialize_weights (adaLN-Zero)."""
        def basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.apply(basic)
        w = self.x_embedder.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for b in self.blocks:
            nn.init.zeros_(b.adaLN_modulation[-1].weight)
            nn.init.zeros_(b.adaLN_modulation[-1].bias)
        for m in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x, t, y=None):
        """x [N, C, H, W], t [N] int, y [N] int (the null class = `classes`) -> [N, out, H, W]."""
        h = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed.to(x.dtype)
        c = self.t_embedder(t)
        if self.y_embedder is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.classes, dtype=torch.long)
            c = c + self.y_embedder(y)
        for block in self.blocks:
            h = block(h, c)
        h = self.final_layer(h, c)
        n, g, p, o = h.shape[0], int(round(h.shape[1] ** 0.5)), self.patch, self.out_channels
        h = h.reshape(n, g, g, p, p, o)
        return torch.einsum("nhwpqc->nchpwq", h).reshape(n, o, g * p, g * p)
