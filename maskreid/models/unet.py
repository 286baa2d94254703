"""Mask generator M: the U-Net of the paper's section 2.1.

Encoder: 9 conv layers (3x3, BN, ReLU) over 5 resolution levels separated by 4 max-pools; widths
w, 2w, 4w, 8w, 16w (w = 32 in the paper: 32..512). Two convs per level on the first four levels and one at
the bottom make the nine. Decoder: 4 transposed convs (2x2, stride 2; widths 8w..w) each followed by the
skip connection of equal resolution and two 3x3 convs. A 1x1 conv with one filter and a sigmoid give the mask.

How the transposed convs start is not in the paper (params `mask_upsampling_init`): `default` is torch's (each of
the four taps of a 2x2 stride-2 kernel drawn on its own, so each upsampling paints its 2x2 cells with a fixed
pattern, and four of them in a row a 16-pixel lattice); `nearest` draws one tap and copies it to the other three,
so at the start every upsampling is a 1x1 conv followed by nearest-neighbour upsampling. Measured over 7 seeds:
the trained masks' grid of squares stays with either (it follows F's stride-32 sampling lattice; docs/ablation.md).
"""

from __future__ import annotations

import torch
from torch import nn

from maskreid.params import MASK_UPSAMPLING_INITS


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Per-pixel mask in (0, 1) of the regions the feature extractor relies on."""

    def __init__(self, base_width: int = 32, in_channels: int = 3, upsampling_init: str = "default") -> None:
        super().__init__()
        if upsampling_init not in MASK_UPSAMPLING_INITS:
            raise ValueError(f"mask_upsampling_init: {upsampling_init!r} is not one of "
                             f"{', '.join(MASK_UPSAMPLING_INITS)}")
        widths = [base_width * 2 ** i for i in range(5)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths[:4]:
            self.down.append(nn.Sequential(conv_bn_relu(cin, w), conv_bn_relu(w, w)))
            cin = w
        self.pool = nn.MaxPool2d(2, 2)
        self.bottom = conv_bn_relu(widths[3], widths[4])
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        cin = widths[4]
        for w in reversed(widths[:4]):
            self.up.append(nn.ConvTranspose2d(cin, w, kernel_size=2, stride=2))
            self.dec.append(nn.Sequential(conv_bn_relu(2 * w, w), conv_bn_relu(w, w)))
            cin = w
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)
        if upsampling_init == "nearest":
            with torch.no_grad():
                for up in self.up:
                    up.weight.copy_(up.weight[:, :, :1, :1].expand_as(up.weight))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        if h % 16 or w % 16:
            raise ValueError(f"U-Net input must be a multiple of 16 in height and width, got {h}x{w}")
        skips = []
        x = images
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return torch.sigmoid(self.head(x))
