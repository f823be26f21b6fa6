"""Small generator and discriminator networks of the ``--e2e`` recipes (CPU-sized at width 1)."""
from __future__ import annotations

import torch
from torch import nn


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class DCGenerator(nn.Sequential):
    """DCGAN generator, z -> 3x32x32: transposed convolutions, batch norm, ReLU, tanh."""

    def __init__(self, z_dim: int, ch: int, norm: bool = True):
        def up(cin, cout, *a):
            layers = [nn.ConvTranspose2d(cin, cout, 4, *a, bias=not norm)]
            return layers + ([nn.BatchNorm2d(cout)] if norm else []) + [nn.ReLU(True)]

        super().__init__(nn.Unflatten(1, (z_dim, 1, 1)), *up(z_dim, 4 * ch, 1, 0), *up(4 * ch, 2 * ch, 2, 1),
                         *up(2 * ch, ch, 2, 1), nn.ConvTranspose2d(ch, 3, 4, 2, 1), nn.Tanh())


class DCDiscriminator(nn.Sequential):
    """DCGAN discriminator, 3x32x32 -> one logit per sample (``[B]``); without batch norm for the
    R1 recipes (StyleGAN2 and R3GAN discriminators have none)."""

    def __init__(self, ch: int, norm: bool = True):
        def down(cin, cout, bn):
            return [nn.Conv2d(cin, cout, 4, 2, 1, bias=not bn)] + ([nn.BatchNorm2d(cout)] if bn else []) + [_lrelu()]

        super().__init__(*down(3, ch, False), *down(ch, 2 * ch, norm), *down(2 * ch, 4 * ch, norm),
                         nn.Conv2d(4 * ch, 1, 4, 1, 0), nn.Flatten(0))


class EncoderDecoder(nn.Module):
    """pix2pix-style image-to-image generator (a shallow U-Net: two downs, two ups, one skip)."""

    def __init__(self, ch: int):
        super().__init__()
        self.d1 = nn.Sequential(nn.Conv2d(3, ch, 4, 2, 1), _lrelu())
        self.d2 = nn.Sequential(nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ch), _lrelu())
        self.u2 = nn.Sequential(nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True))
        self.u1 = nn.Sequential(nn.ConvTranspose2d(2 * ch, 3, 4, 2, 1), nn.Tanh())

    def forward(self, x):
        h1 = self.d1(x)
        return self.u1(torch.cat([self.u2(self.d2(h1)), h1], 1))


class PatchDiscriminator(nn.Sequential):
    """pix2pix / CycleGAN PatchGAN (the 70x70 layout: C64-C128-C256-C512 at ``ch`` = 64, then a
    1-channel convolution) on the input and output images concatenated: a logit map
    ``[B, 1, H/8 - 2, W/8 - 2]`` (6x6 at 64x64, 30x30 at 256x256)."""

    def __init__(self, ch: int):
        def block(cin, cout, stride, bn=True):
            return [nn.Conv2d(cin, cout, 4, stride, 1, bias=not bn)] + ([nn.BatchNorm2d(cout)] if bn else []) + [_lrelu()]

        super().__init__(*block(6, ch, 2, bn=False), *block(ch, 2 * ch, 2), *block(2 * ch, 4 * ch, 2),
                         *block(4 * ch, 8 * ch, 1), nn.Conv2d(8 * ch, 1, 4, 1, 1))
