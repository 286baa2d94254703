"""The mask figure (like the paper's Fig. 1): images, generated masks, what in each mask differs from M's
average mask, images with the top pixels hidden."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from maskreid.data.loading import ImageCache  # noqa: E402
from maskreid.data.transforms import Normalizer, center_crop, test_transform  # noqa: E402
from maskreid.io import atomic_path  # noqa: E402
from maskreid.masks.measures import average_mask  # noqa: E402
from maskreid.models.masking import hide_top_pixels  # noqa: E402


def images_across_cameras(camids: np.ndarray, count: int, pids: np.ndarray | None = None) -> list[int]:
    """Up to `count` indices, cycling through the cameras; within a camera, evenly spaced over its images.
    With `pids`, no identity twice (from an evenly spaced spot, the next image of a person not yet shown) while
    unseen identities remain, so a mask that follows the person and one that does not are told apart."""
    cameras = np.unique(camids)
    per_camera = {c: np.flatnonzero(camids == c) for c in cameras}
    rounds = -(-count // len(cameras))
    chosen: list[int] = []
    shown: set[int] = set()
    for r in range(rounds):
        for c in cameras:
            members = per_camera[c]
            spots = np.linspace(0, len(members) - 1, num=min(rounds, len(members))).round().astype(int)
            if r >= len(spots) or len(chosen) >= count:
                continue
            pick = int(members[spots[r]])
            if pids is not None:
                fresh = [int(m) for m in np.roll(members, -spots[r]) if int(pids[m]) not in shown and m not in chosen]
                pick = fresh[0] if fresh else pick
                shown.add(int(pids[pick]))
            chosen.append(pick)
    return chosen


# the difference row's colour scale, in mask units, fixed so that a faint row means masks that barely differ
DIFFERENCE_RANGE = 0.5


@torch.no_grad()
def mask_figure(mask_net: torch.nn.Module, cache: ImageCache, crop: tuple[int, int], drop_ratio: float,
                out: Path, count: int = 8, device: torch.device | str = "cpu", space: str = "pixel") -> None:
    """Save a 4-row PNG for `count` images of `cache`, taken in turn from each camera, each of another person.
    The third row subtracts M's average mask over (up to 512 of) the images of `cache`: a pattern shared by
    every image (the masks' fixed part) vanishes there, and what remains is the part of each mask that follows
    its image, on a fixed scale of +-0.5. Both mask rows have their colour scale."""
    device = torch.device(device)
    normalizer = Normalizer(device)
    idx = images_across_cameras(cache.camids, count, cache.pids)
    raw = center_crop(cache.images[idx], crop)
    images = test_transform(cache.images[idx], crop, normalizer, device)
    masks = mask_net.eval()(images)
    average, averaged = average_mask(mask_net, cache, crop, device)
    hidden = normalizer.denormalize(hide_top_pixels(images, masks, drop_ratio, normalizer, space)).clamp(0, 1)
    rows = [("image", raw.permute(0, 2, 3, 1).numpy(), {}),
            ("mask M(a)", masks[:, 0].cpu().numpy(), {"cmap": "jet", "vmin": 0, "vmax": 1}),
            ("M(a) - average mask", (masks[:, 0] - average.to(masks.device)).cpu().numpy(),
             {"cmap": "RdBu_r", "vmin": -DIFFERENCE_RANGE, "vmax": DIFFERENCE_RANGE}),
            (f"top {drop_ratio:.0%} hidden", hidden.permute(0, 2, 3, 1).cpu().numpy(), {})]
    fig, axes = plt.subplots(len(rows), len(idx), figsize=(1.3 * len(idx), 8.2), squeeze=False)
    for r, (label, data, style) in enumerate(rows):
        for c in range(len(idx)):
            ax = axes[r][c]
            ax.imshow(data[c], **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                ax.set_title(f"camera {cache.camids[idx[c]]}", fontsize=7)
    fig.tight_layout()
    for row, label in ((1, "M(a): 0 unimportant, 1 important"),
                       (2, f"above (red) / below (blue) M's mean\nover {averaged} test images")):
        scale = fig.colorbar(axes[row][0].images[0], ax=list(axes[row]), fraction=0.02, pad=0.01)
        scale.set_label(label, fontsize=7)
        scale.ax.tick_params(labelsize=6)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")     # colour bars and their labels whole
    plt.close(fig)
