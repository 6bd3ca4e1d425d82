"""W3's networks in PyTorch: the DCGAN generator and discriminator of the PyTorch DCGAN
tutorial (an `nn.Sequential` called `main`), which are also Loom's state-dict names
(`main.0.weight`, `main.1.running_mean`, `main.1.num_batches_tracked` …), so a Loom checkpoint's
/generator, /discriminator and /generator_ema load by name alone. NCHW here (Loom: NHWC).

    G: z(100) → ConvT(100→256, k4 s1 p0) BN ReLU → ConvT(256→128, k4 s2 p1) BN ReLU
          → ConvT(128→64, k4 s2 p1) BN ReLU → ConvT(64→3, k4 s2 p1, bias) Tanh
    D: Conv(3→64, k4 s2 p1, bias) LReLU(0.2) → Conv(64→128, k4 s2 p1) BN LReLU
          → Conv(128→256, k4 s2 p1) BN LReLU → Conv(256→1, k4 s1 p0, bias) → logit
Init N(0, 0.02) for every convolution weight and bias, BN weight N(1, 0.02), BN bias 0.
"""
import torch.nn as nn

G_PARAMETERS, D_PARAMETERS = 1_068_931, 663_361


class Generator(nn.Module):
    def __init__(self, z_dim=100, width=64, channels=3):
        super().__init__()
        self.z_dim = z_dim
        self.main = nn.Sequential(
            nn.ConvTranspose2d(z_dim, 4 * width, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * width), nn.ReLU(True),
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(True),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
            nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=True), nn.Tanh(),
        )
        initialize(self)

    def forward(self, z):
        """z [N, z_dim] -> images [N, C, 32, 32]."""
        return self.main(z.reshape(z.shape[0], self.z_dim, 1, 1))


class Discriminator(nn.Module):
    def __init__(self, width=64, channels=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1, bias=True), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * width), nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * width, 1, 4, 1, 0, bias=True),
        )
        initialize(self)

    def forward(self, x):
        """images [N, C, 32, 32] -> logits [N]."""
        return self.main(x).reshape(x.shape[0])


def initialize(module):
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
