"""W1's network in PyTorch: the DDPM U-Net of guided-diffusion as Loom builds it
(Sources/LoomModels/UNet.swift, UNetBlocks.swift), under Loom's state-dict names so a Loom
checkpoint loads by name alone. Inputs and outputs are NCHW here (Loom's are NHWC).

Loom's names and what they are in guided-diffusion's `UNetModel` (W1: base 32, multipliers
1-2-2, 2 ResBlocks per level, attention at 8x8, 4 heads):
    timeEmbedding.linear1 / linear2        time_embed.0 / time_embed.2
    classEmbedding                         label_emb
    stem                                   input_blocks.0.0
    down.L.res.B.{norm1,conv1}             input_blocks.k.0.in_layers.{0,2}
    down.L.res.B.embeddingProjection       input_blocks.k.0.emb_layers.1
    down.L.res.B.{norm2,conv2}             input_blocks.k.0.out_layers.{0,3}
    down.L.res.B.skip                      input_blocks.k.0.skip_connection (1x1 conv)
    down.L.attn.B.{norm,qkv,proj}          input_blocks.k.1.{norm,qkv,proj_out} (qkv as a 1x1 conv)
    down.L.resample                        input_blocks.k.0.op (conv3x3 stride 2)
    middle.res1 / attn / res2              middle_block.0 / 1 / 2
    up.L.res.B, up.L.attn.B                output_blocks.k.0, output_blocks.k.1
    up.L.resample                          output_blocks.k.2.conv (nearest x2, conv3x3)
    outNorm / outConv                      out.0 / out.2
k counts blocks in guided-diffusion's flat lists; up.0 is the deepest level. One difference in
layout: Loom's qkv output channels are [q | k | v], each split into heads (guided-diffusion's
QKVAttentionLegacy splits heads first).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffusion import timestep_features


class TimestepEmbedding(nn.Module):
    def __init__(self, frequencies, width):
        super().__init__()
        self.frequencies = frequencies
        self.linear1, self.linear2 = nn.Linear(frequencies, width), nn.Linear(width, width)

    def forward(self, t):
        return self.linear2(F.silu(self.linear1(timestep_features(t, self.frequencies).to(self.linear1.weight.dtype))))


class ResBlock(nn.Module):
    """GN, SiLU, conv3x3, + Linear(SiLU(emb)), GN, SiLU, [dropout], conv3x3, + input (1x1 conv
    when the width changes). Loom starts conv2 at zero."""

    def __init__(self, cin, cout, emb, groups, dropout=0.0):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.embeddingProjection = nn.Linear(emb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, 1, 1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, activated_emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.embeddingProjection(activated_emb)[:, :, None, None]
        h = F.silu(self.norm2(h))
        if self.dropout is not None:
            h = self.dropout(h)
        h = self.conv2(h)
        return (self.skip(x) if self.skip is not None else x) + h


class AttentionBlock(nn.Module):
    """GroupNorm, 1x1 conv to q, k, v ([q | k | v], each heads × d), softmax(qkᵀ/√d)v per head,
    1x1 conv projection (zero at start), residual."""

    def __init__(self, channels, heads, groups):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        n, c, h, w = x.shape
        d = c // self.heads
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, d, h * w).unbind(1)   # [N, heads, d, T]
        a = torch.softmax((q.transpose(-2, -1) @ k) / math.sqrt(d), dim=-1)              # [N, heads, T, T]
        out = (v @ a.transpose(-2, -1)).reshape(n, c, h, w)                               # [N, heads, d, T]
        return x + self.proj(out)


class UNetLevel(nn.Module):
    def __init__(self, res, attn, resample):
        super().__init__()
        self.res, self.attn, self.resample = nn.ModuleList(res), nn.ModuleList(attn), resample


class UNetMiddle(nn.Module):
    def __init__(self, channels, emb, heads, groups, dropout):
        super().__init__()
        self.res1 = ResBlock(channels, channels, emb, groups, dropout)
        self.attn = AttentionBlock(channels, heads, groups)
        self.res2 = ResBlock(channels, channels, emb, groups, dropout)

    def forward(self, x, emb):
        return self.res2(self.attn(self.res1(x, emb)), emb)


class UNet(nn.Module):
    """W1 by default: 32x32x1, base 32, multipliers 1-2-2, 2 ResBlocks per level (3 on the way
    up), attention at 8x8 with 4 heads, GroupNorm(8), unconditional; 1,623,169 parameters."""

    def __init__(self, image_size=32, in_channels=1, base=32, mult=(1, 2, 2), res_blocks=2,
                 attention_resolutions=(8,), heads=4, groups=8, classes=0, dropout=0.0, learn_sigma=False):
        super().__init__()
        emb = 4 * base
        self.classes = classes
        self.timeEmbedding = TimestepEmbedding(base, emb)
        self.classEmbedding = nn.Embedding(classes + 1, emb) if classes > 0 else None
        self.stem = nn.Conv2d(in_channels, base, 3, 1, 1)
        ch, res, skips, down = base, image_size, [base], []
        for level, m in enumerate(mult):
            out, attend = base * m, res in attention_resolutions
            blocks, attn = [], []
            for _ in range(res_blocks):
                blocks.append(ResBlock(ch, out, emb, groups, dropout))
                ch = out
                if attend:
                    attn.append(AttentionBlock(ch, heads, groups))
                skips.append(ch)
            resample = None
            if level < len(mult) - 1:
                resample = nn.Conv2d(ch, ch, 3, 2, 1)
                skips.append(ch)
                res //= 2
            down.append(UNetLevel(blocks, attn, resample))
        self.down = nn.ModuleList(down)
        self.middle = UNetMiddle(ch, emb, heads, groups, dropout)
        up = []
        for level in reversed(range(len(mult))):
            out, attend = base * mult[level], res in attention_resolutions
            blocks, attn = [], []
            for _ in range(res_blocks + 1):
                blocks.append(ResBlock(ch + skips.pop(), out, emb, groups, dropout))
                ch = out
                if attend:
                    attn.append(AttentionBlock(ch, heads, groups))
            resample = None
            if level > 0:
                resample = nn.Conv2d(ch, ch, 3, 1, 1)
                res *= 2
            up.append(UNetLevel(blocks, attn, resample))
        self.up = nn.ModuleList(up)
        self.outNorm = nn.GroupNorm(groups, ch)
        self.outConv = nn.Conv2d(ch, in_channels * (2 if learn_sigma else 1), 3, 1, 1)
        nn.init.zeros_(self.outConv.weight)
        nn.init.zeros_(self.outConv.bias)

    def forward(self, x, t, y=None):
        emb = self.timeEmbedding(t)
        if self.classEmbedding is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.classes, dtype=torch.long)
            emb = emb + self.classEmbedding(y)
        emb = F.silu(emb)
        h = self.stem(x)
        skips = [h]
        for level in self.down:
            for i, block in enumerate(level.res):
                h = block(h, emb)
                if len(level.attn):
                    h = level.attn[i](h)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)
        h = self.middle(h, emb)
        for level in self.up:
            for i, block in enumerate(level.res):
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
                if len(level.attn):
                    h = level.attn[i](h)
            if level.resample is not None:
                h = level.resample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.outConv(F.silu(self.outNorm(h)))
