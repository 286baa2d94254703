"""DVC stage masks@<dataset>: the mask figure (the paper's Fig. 1) from the stage-3 mask generator."""

from __future__ import annotations

from maskreid.data.build import load_split
from maskreid.data.loading import ImageCache
from maskreid.figures.masks import mask_figure
from maskreid.models.build import load_mask_net
from maskreid.params import Params
from maskreid.paths import DatasetPaths
from maskreid.runtime.device import pick_device


def masks_figure(params: Params, paths: DatasetPaths) -> None:
    """Fig. 1 of the paper for this dataset: test images, the stage-3 M's masks, the hidden images. Query and
    gallery images together: some datasets (CUHK01) take all queries with one camera and the gallery with the
    other, and a figure must show every camera; distractors (person id 0) are left out."""
    device = pick_device(params.device)
    query = load_split(paths, "query", params.input.resize)
    gallery = load_split(paths, "gallery", params.input.resize)
    test = ImageCache.concat([query, gallery])
    test = test.subset(test.pids > 0)
    mask_net = load_mask_net(paths.checkpoint(3), params, device)
    mask_figure(mask_net, test, params.input.crop, params.drop_ratio, paths.mask_figure, device=device,
                space=params.mask_space)
