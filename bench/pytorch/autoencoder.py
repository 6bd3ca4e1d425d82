"""W4's network in PyTorch: the KL autoencoder of latent diffusion's first stage reduced to W4's
shapes, as Loom builds it (Sources/LoomModels/VAE/KLAutoencoder.swift), under Loom's state-dict
names so a Loom checkpoint's /model loads by name alone. NCHW here (Loom: NHWC).

Loom's names and their counterparts in latent diffusion's `ldm/modules/diffusionmodules/model.py`
(W4 has one ResBlock per level, one middle ResBlock and no attention, so `mid.attn_1` and
`mid.block_2` have no counterpart):
    encoder.convIn / normOut / convOut      encoder.conv_in / norm_out / conv_out
    encoder.down.L.block.B.*                encoder.down.L.block.B.*
    encoder.down.L.resample                 encoder.down.L.downsample.conv (stride 2; Loom pads
                                            1 on every side, LDM pads right/bottom only)
    encoder.mid / decoder.mid               encoder.mid.block_1 / decoder.mid.block_1
    decoder.up.K.resample                   decoder.up.(levels-1-K).upsample.conv (run before the blocks here)
    decoder.up.K.block.B.*                  decoder.up.(levels-1-K).block.B.*
    *.ninShortcut                           *.nin_shortcut
    decoder.convIn / normOut / convOut      decoder.conv_in / norm_out / conv_out
ResBlock: norm1, conv1, norm2, conv2 (+ ninShortcut), GroupNorm(32, eps 1e-6), SiLU.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

PARAMETERS = 1_475_979


def norm(c, groups):
    return nn.GroupNorm(groups, c, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm1, self.conv1 = norm(cin, groups), nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2, self.conv2 = norm(cout, groups), nn.Conv2d(cout, cout, 3, 1, 1)
        self.ninShortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        return (self.ninShortcut(x) if self.ninShortcut is not None else x) + h


class Level(nn.Module):
    def __init__(self, blocks, resample):
        super().__init__()
        self.block, self.resample = nn.ModuleList(blocks), resample


class Encoder(nn.Module):
    def __init__(self, channels, base, mult, res_blocks, latent, groups):
        super().__init__()
        self.convIn = nn.Conv2d(channels, base, 3, 1, 1)
        width, down = base, []
        for m in mult:
            blocks = []
            for _ in range(res_blocks):
                blocks.append(ResBlock(width, base * m, groups))
                width = base * m
            down.append(Level(blocks, nn.Conv2d(width, width, 3, 2, 1)))
        self.down = nn.ModuleList(down)
        self.mid = ResBlock(width, width, groups)
        self.normOut, self.convOut = norm(width, groups), nn.Conv2d(width, 2 * latent, 3, 1, 1)

    def forward(self, x):
        h = self.convIn(x)
        for level in self.down:
            for block in level.block:
                h = block(h)
            h = level.resample(h)
        return self.convOut(F.silu(self.normOut(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, channels, base, mult, res_blocks, latent, groups):
        super().__init__()
        widths = [base] + [base * m for m in mult]
        width = widths[-1]
        self.convIn = nn.Conv2d(latent, width, 3, 1, 1)
        self.mid = ResBlock(width, width, groups)
        up = []
        for level in reversed(range(len(mult))):
            resample = nn.Conv2d(width, width, 3, 1, 1)
            blocks = []
            for _ in range(res_blocks):
                blocks.append(ResBlock(width, widths[level], groups))
                width = widths[level]
            up.append(Level(blocks, resample))
        self.up = nn.ModuleList(up)
        self.normOut, self.convOut = norm(width, groups), nn.Conv2d(width, channels, 3, 1, 1)

    def forward(self, z):
        h = self.mid(self.convIn(z))
        for level in self.up:
            h = level.resample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            for block in level.block:
                h = block(h)
        return self.convOut(F.silu(self.normOut(h)))


class KLAutoencoder(nn.Module):
    """W4 by default: 3x32x32 -> 4x8x8 latents (mean and log-variance) -> 3x32x32."""

    def __init__(self, channels=3, base=64, mult=(1, 2), res_blocks=1, latent=4, groups=32):
        super().__init__()
        self.encoder = Encoder(channels, base, mult, res_blocks, latent, groups)
        self.decoder = Decoder(channels, base, mult, res_blocks, latent, groups)

    def encode(self, x):
        """(mean, log-variance clamped to [-30, 20]), latent diffusion's DiagonalGaussianDistribution."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def forward(self, x, eps):
        """W4's loss terms for images x and standard normal noise eps (latent-shaped):
        (reconstruction, Σ|x − x̂|/B, KL/B, mean, log-variance)."""
        mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * eps
        recon = self.decoder(z)
        b = x.shape[0]
        rec = (x - recon).abs().sum() / b
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum() / b
        return recon, rec, kl, mean, logvar
