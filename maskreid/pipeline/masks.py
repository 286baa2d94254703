"""DVC stage masks@<dataset>: the mask figure (the paper's Fig. 1) from the stage-3 mask generator."""

from __future__ import annotations

from maskreid.figures import mask_figure
from maskreid.params import Params
from maskreid.paths import DatasetPaths
from maskreid.pipeline.common import load_mask_net, load_split, pick_device


def masks_figure(params: Params, paths: DatasetPaths) -> None:
    """Fig. 1 of the paper for this dataset: query images, the stage-3 M's masks, the hidden images."""
    device = pick_device(params.device)
    query = load_split(paths, "query", params.input.resize)
    mask_net = load_mask_net(paths.checkpoint(3), params, device)
    mask_figure(mask_net, query, params.input.crop, params.drop_ratio, paths.mask_figure, device=device,
                space=params.mask_space)
