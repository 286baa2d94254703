"""DVC stage masks@<dataset>: the mask figure (the paper's Fig. 1) from the stage-3 mask generator."""

from __future__ import annotations

import numpy as np
import torch

from maskreid.data.loading import ImageCache
from maskreid.figures import mask_figure
from maskreid.params import Params
from maskreid.paths import DatasetPaths
from maskreid.pipeline.common import load_mask_net, load_split, pick_device


def masks_figure(params: Params, paths: DatasetPaths) -> None:
    """Fig. 1 of the paper for this dataset: test images, the stage-3 M's masks, the hidden images. Query and
    gallery images together: some datasets (CUHK01) take all queries with one camera and the gallery with the
    other, and a figure must show every camera; distractors (person id 0) are left out."""
    device = pick_device(params.device)
    query = load_split(paths, "query", params.input.resize)
    gallery = load_split(paths, "gallery", params.input.resize)
    pids, camids = np.concatenate([query.pids, gallery.pids]), np.concatenate([query.camids, gallery.camids])
    people = pids > 0
    test = ImageCache(torch.cat([query.images, gallery.images])[torch.from_numpy(people)], pids[people],
                      camids[people], [p for p, keep in zip(query.paths + gallery.paths, people) if keep])
    mask_net = load_mask_net(paths.checkpoint(3), params, device)
    mask_figure(mask_net, test, params.input.crop, params.drop_ratio, paths.mask_figure, device=device,
                space=params.mask_space)
