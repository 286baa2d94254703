"""Why might hiding M's top pixels hurt? Numbers for the suspects, measured on a trained dataset's checkpoints
(`maskreid diagnose-masks <dataset>`), for the masks of stage 2 (what stage 3 starts with) and stage 3:

- brightness: does M follow brightness rather than identity? (in pixel space M(a)*a leaves a dark pixel
  almost unchanged whatever the mask, so L_identity never asks M to keep dark pixels);
- input dependence and the share of hidden pixels on the person against M's average mask (fixed pattern?);
- checkerboard: the share of the mask's variation at the 2-pixel period transposed convolutions leave, and
  a grid of squares every 16 pixels (the U-Net's four pooling levels) or every 32 (F's output stride);
- F's own lattice: how unevenly F's embedding depends on the pixel positions within each 32 x 32 cell (a
  ResNet's stride-2 layers sample the image on a lattice), and how closely M's average mask follows that
  pattern (M's job is to keep what F relies on: a mask that copies F's sampling lattice is M doing its job
  on a model that aliases, not an artifact of M's upsampling);
- borders: the mask's mean near the image border against the interior (zero padding);
- the balance of L_mask's terms (identity vs weighted sparsity vs contiguity);
- the two triplet terms of Eq. 2 at the start of stage 3: their values, the norms of their weighted gradients
  on F, and the cosine between those gradients;
- BatchNorm: how far the hidden batch's per-channel statistics sit from the original batch's, in units of
  the original's standard deviation (F normalises the hidden pass with its own batch statistics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from maskreid.data.transforms import Normalizer, test_crop, test_transform
from maskreid.models import losses
from maskreid.models.masking import apply_soft_mask, hide_pixels, top_fraction_mask
from maskreid.train.epochs import bn_running_stats_frozen

if TYPE_CHECKING:
    from maskreid.params import Params
    from maskreid.paths import DatasetPaths

BORDER = 4   # pixels from the edge counted as "border"


def brightness_correlation(images01: torch.Tensor, masks: torch.Tensor) -> float:
    """Mean over images of the Pearson correlation, across pixels, between the mask and the pixel luminance."""
    lum = (0.299 * images01[:, 0] + 0.587 * images01[:, 1] + 0.114 * images01[:, 2]).flatten(1)
    m = masks.flatten(1)
    lum, m = lum - lum.mean(1, keepdim=True), m - m.mean(1, keepdim=True)
    corr = (lum * m).sum(1) / (lum.norm(dim=1) * m.norm(dim=1)).clamp_min(1e-12)
    return float(corr.mean())


def checkerboard_share(masks: torch.Tensor) -> float:
    """Share of the mask's spatial variance (power of its non-constant Fourier components) at the highest
    frequency of either axis, the 2-pixel period of transposed-convolution artifacts. A smooth mask: near 0."""
    spectrum = torch.fft.fft2(masks - masks.mean((-2, -1), keepdim=True)).abs().pow(2)
    h, w = masks.shape[-2:]
    nyquist = torch.zeros(h, w, dtype=torch.bool)
    nyquist[h // 2, :] = True
    nyquist[:, w // 2] = True
    return float(spectrum[..., nyquist].sum() / spectrum.sum().clamp_min(1e-12))


def grid_peak(masks: torch.Tensor, period: int) -> float:
    """How much a mask repeats with `period` pixels in both directions (a grid of squares, as the U-Net's 4
    pooling levels can leave every 16 pixels): the mean spectral power on the lattice of that period's
    harmonics divided by the mean power of all non-constant frequencies. About 1: no such grid; far above 1:
    one is there. NaN when the image size is not a multiple of the period."""
    h, w = masks.shape[-2:]
    if h % period or w % period:
        return float("nan")
    power = torch.fft.fft2(masks.float()).abs().pow(2).mean(0) if masks.dim() == 3 else \
        torch.fft.fft2(masks.float()).abs().pow(2)
    ky = torch.arange(h) % (h // period) == 0
    kx = torch.arange(w) % (w // period) == 0
    lattice = ky[:, None] & kx[None, :]
    lattice[0, 0] = False
    ac = torch.ones(h, w, dtype=torch.bool)
    ac[0, 0] = False
    return float(power[lattice].mean() / power[ac].mean().clamp_min(1e-12))


def input_saliency(extractor: nn.Module, images: torch.Tensor, directions: int = 4, seed: int = 0) -> torch.Tensor:
    """(H, W): the mean over images and `directions` random unit vectors r of |d(r . F(a)) / da|, summed over
    colour channels: how far a small change at each pixel position moves F's embedding."""
    generator = torch.Generator().manual_seed(seed)
    extractor.eval()
    x = images.detach().clone().requires_grad_(True)
    saliency = torch.zeros(images.shape[-2:])
    for _ in range(directions):
        embeddings = extractor(x).float()
        r = torch.randn(embeddings.shape[1], generator=generator)
        grad, = torch.autograd.grad(embeddings @ (r / r.norm()), x, grad_outputs=torch.ones(len(x)))
        saliency += grad.abs().sum(1).mean(0).cpu()
    return saliency / directions


def lattice_profile(values: torch.Tensor, period: int) -> torch.Tensor:
    """(period, period): `values` (H, W) averaged over the cells of a period x period lattice."""
    h, w = values.shape
    return values.reshape(h // period, period, w // period, period).mean((0, 2))


def lattice_contrast(values: torch.Tensor, period: int = 32) -> float:
    """(max - min) / mean of the lattice profile: 0 when no position within a cell stands out."""
    profile = lattice_profile(values, period)
    return float((profile.max() - profile.min()) / profile.mean().clamp_min(1e-12))


def lattice_alignment(a: torch.Tensor, b: torch.Tensor, period: int = 32) -> float:
    """Pearson correlation of two maps' lattice profiles: 1 when both repeat the same pattern in each cell."""
    pa, pb = lattice_profile(a, period).flatten(), lattice_profile(b, period).flatten()
    pa, pb = pa - pa.mean(), pb - pb.mean()
    return float((pa @ pb) / (pa.norm() * pb.norm()).clamp_min(1e-12))


def border_ratio(masks: torch.Tensor) -> float:
    """Mean mask value within BORDER pixels of the edge divided by the interior's mean."""
    inner = masks[..., BORDER:-BORDER, BORDER:-BORDER]
    total, inner_sum = masks.sum((-2, -1)), inner.sum((-2, -1))
    n_border = masks.shape[-2] * masks.shape[-1] - inner.shape[-2] * inner.shape[-1]
    border_mean = (total - inner_sum) / n_border
    return float(border_mean.mean() / inner.mean().clamp_min(1e-12))


def mask_terms(mask_net: nn.Module, extractor: nn.Module, images: torch.Tensor, normalizer: Normalizer,
               lambda2: float, sparsity_weight: float, space: str = "pixel") -> dict[str, float]:
    """L_mask's three terms as weighted in Eq. 6, on one batch, with F and M in eval mode as stage 2's F is
    (BatchNorm's running statistics, not the batch's), no update; both modules are left in the mode they came in."""
    modes = [(module, module.training) for module in (mask_net, extractor)]
    try:
        mask_net.eval()
        extractor.eval()
        with torch.no_grad():
            masks = mask_net(images).float()
            ident = losses.identity_loss(extractor(images).float(),
                                         extractor(apply_soft_mask(images, masks, normalizer, space)).float())
            sparse, contig = losses.sparsity_loss(masks), losses.contiguity_loss(masks)
    finally:
        for module, training in modes:
            module.train(training)
    return {"identity_weighted": float(lambda2 * ident),
            "sparsity_weighted": float((1 - lambda2) * sparsity_weight * sparse),
            "contiguity_weighted": float((1 - lambda2) * contig)}


def _bn_inputs(module: nn.Module) -> tuple[list[torch.Tensor], list[Any]]:
    """Hooks recording every BatchNorm's input per-channel mean and std of the next forward pass."""
    records: list[torch.Tensor] = []

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().float()
        records.append(torch.stack([x.mean((0, 2, 3)), x.std((0, 2, 3))]))

    handles = [m.register_forward_pre_hook(hook) for m in module.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return records, handles


def triplet_terms(extractor: nn.Module, keep: torch.Tensor, images: torch.Tensor, pids: torch.Tensor,
                  normalizer: Normalizer, lambda1: float, margin: float, space: str = "pixel") -> dict[str, float]:
    """Stage 3's Eq. 2 on one PK batch, as its training step computes it (F in train mode, BN running
    statistics frozen for the hidden pass), without updating anything: each term's value, the norm of each
    weighted term's gradient on F's parameters, their cosine; and the BN statistics shift of the hidden pass."""
    params = [p for p in extractor.parameters() if p.requires_grad]
    saved = {k: v.clone() for k, v in extractor.state_dict().items()}
    extractor.train()
    rec_o, handles = _bn_inputs(extractor)
    t_orig = losses.batch_hard_triplet(extractor(images).float(), pids, margin)
    for h in handles:
        h.remove()
    rec_h, handles = _bn_inputs(extractor)
    with bn_running_stats_frozen(extractor):
        t_hidden = losses.batch_hard_triplet(extractor(hide_pixels(images, keep, normalizer, space)).float(), pids, margin)
    for h in handles:
        h.remove()
    g_o = torch.autograd.grad(lambda1 * t_orig, params, retain_graph=True, allow_unused=True)
    g_h = torch.autograd.grad((1 - lambda1) * t_hidden, params, allow_unused=True)
    flat_o = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(g_o, params)])
    flat_h = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(g_h, params)])
    extractor.load_state_dict(saved)        # the original pass moved BN running statistics: put them back
    shift = [((h[0] - o[0]).abs() / o[1].clamp_min(1e-6)).mean() for o, h in zip(rec_o, rec_h)]
    return {"triplet_original": float(t_orig.detach()), "triplet_hidden": float(t_hidden.detach()),
            "grad_norm_original_weighted": float(flat_o.norm()), "grad_norm_hidden_weighted": float(flat_h.norm()),
            "grad_cosine": float(torch.nn.functional.cosine_similarity(flat_o, flat_h, dim=0)),
            "bn_mean_shift_first_layer": float(shift[0]), "bn_mean_shift_mean": float(torch.stack(shift).mean())}


def mask_statistics(masks: torch.Tensor, images01: torch.Tensor, drop_ratio: float) -> dict[str, float]:
    """The per-image mask measures that need no model: brightness, fixed pattern, checkerboard, borders."""
    from maskreid.masks.measures import input_dependence
    hidden = top_fraction_mask(masks[:, None], drop_ratio)[:, 0] == 0
    lum = 0.299 * images01[:, 0] + 0.587 * images01[:, 1] + 0.114 * images01[:, 2]
    return {"mask_mean": float(masks.mean()), "input_dependence": input_dependence(masks),
            "brightness_correlation": brightness_correlation(images01, masks),
            "hidden_luminance": float(lum[hidden].mean()), "image_luminance": float(lum.mean()),
            "checkerboard_share": checkerboard_share(masks), "grid_peak_16": grid_peak(masks, 16),
            "grid_peak_32": grid_peak(masks, 32),
            "border_ratio": border_ratio(masks)}


def diagnose(params: "Params", paths: "DatasetPaths", n_images: int = 200, seed: int = 0) -> dict[str, Any]:
    """Every measure above for one trained dataset: M of stage 2 with the stage-1 F (stage 3's start) and M of
    stage 3 with the stage-3 F (its end); hiding by M against random blocks of the same size."""
    from maskreid.data.build import load_split
    from maskreid.data.sampler import PKSampler
    from maskreid.masks.measures import person_measures, silhouettes_of
    from maskreid.models.build import load_extractor, load_mask_net
    from maskreid.models.masking import random_block_mask

    torch.manual_seed(seed)
    device = torch.device("cpu")
    crop, normalizer = params.input.crop, Normalizer(device)
    query = load_split(paths, "query", params.input.resize)
    train = load_split(paths, "train", params.input.resize)
    q01 = test_crop(query.images[:n_images], crop, device)
    person = silhouettes_of(query, paths.prepared / "images", paths.silhouettes, params.input.resize, crop)
    sampler = PKSampler(train.pids, params.stage1.ids_per_batch, params.stage1.images_per_id, seed)
    batch = next(iter(sampler))
    pk_images = test_transform(train.images[batch], crop, normalizer)
    pk_pids = torch.as_tensor(train.pids[batch])
    mask_batch = test_transform(train.images[:params.stage2.batch_size], crop, normalizer, device)
    random_keep = random_block_mask(len(batch), *crop, params.drop_ratio, torch.Generator().manual_seed(seed))
    out: dict[str, Any] = {"dataset": paths.dataset, "query_images": int(q01.shape[0])}
    for label, f_stage, m_stage in (("start of stage 3 (F stage 1, M stage 2)", 1, 2),
                                    ("end of stage 3 (F and M of stage 3)", 3, 3)):
        extractor = load_extractor(paths.checkpoint(f_stage), params, device)
        mask_net = load_mask_net(paths.checkpoint(m_stage), params, device)
        with torch.no_grad():
            masks = mask_net(normalizer.normalize(q01)).float()[:, 0]
            pk_keep = top_fraction_mask(mask_net(pk_images).float(), params.drop_ratio)
        row: dict[str, Any] = mask_statistics(masks, q01, params.drop_ratio)
        h, w = crop
        if h % 32 == 0 and w % 32 == 0:
            saliency = input_saliency(extractor, normalizer.normalize(q01[:64]), seed=seed)
            row.update(f_saliency_lattice_contrast_32=lattice_contrast(saliency),
                       mask_follows_f_lattice_32=lattice_alignment(masks.mean(0), saliency))
        if person is not None:
            row.update(person_measures(masks, person[:len(masks)], params.drop_ratio))
        row.update(mask_terms(mask_net, extractor, mask_batch, normalizer, params.lambda2, params.sparsity_weight,
                              params.mask_space))
        row["learned_hiding"] = triplet_terms(extractor, pk_keep, pk_images, pk_pids, normalizer, params.lambda1,
                                              params.triplet_margin, params.mask_space)
        row["random_blocks"] = triplet_terms(extractor, random_keep, pk_images, pk_pids, normalizer,
                                             params.lambda1, params.triplet_margin, params.mask_space)
        out[label] = row
    out["settings"] = {"lambda1": params.lambda1, "lambda2": params.lambda2, "drop_ratio": params.drop_ratio,
                       "mask_space": params.mask_space,
                       "sparsity_weight": params.sparsity_weight, "unet_width": params.model.unet_width,
                       "stage2_epochs": params.stage2.epochs, "seed": params.seed, "pk_batch": len(batch)}
    return out


def markdown(result: dict[str, Any]) -> str:
    """One table: rows are the measures, columns the two moments."""
    moments = [k for k in result if k.startswith(("start", "end"))]
    lines = [f"| {result['dataset']} | " + " | ".join(moments) + " |", "|---|" + "---|" * len(moments)]
    keys = [k for k, v in result[moments[0]].items() if not isinstance(v, dict)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{result[m][key]:.4g}" for m in moments) + " |")
    for hiding in ("learned_hiding", "random_blocks"):
        for key in result[moments[0]][hiding]:
            lines.append(f"| {hiding}: {key} | " + " | ".join(f"{result[m][hiding][key]:.4g}" for m in moments) + " |")
    return "\n".join(lines)
