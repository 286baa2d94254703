"""Load params.yaml (through Hydra's Compose API) and turn it into typed, validated settings.

Validation happens before any work so that a broken params.yaml fails in well under a second with one
message that lists every problem, instead of after minutes of training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
MASK_SPACES = ("pixel", "normalized")  # where M(a)*a and the hiding act (maskreid.masking.apply_soft_mask)
BACKENDS = ("auto", "gloo", "nccl")    # torch.distributed: auto = nccl with CUDA GPUs, gloo on CPUs
# Stage 3's hidden pixels: M's top drop_ratio (the paper), or controls (README, "Do the masks help?")
HIDINGS = ("learned", "random_blocks", "random_pixels", "none")
# Backbones checked to build with timm as F's trunk (tests/test_models.py); listed here so that validation
# needs no torch import and can name the allowed values.
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50d", "resnext50_32x4d",
             "seresnet50", "densenet121", "efficientnet_b0", "mobilenetv3_large_100", "convnext_tiny")
KNOWN_DATASETS = ("synthetic", "market1501", "dukemtmcreid", "cuhk03_labeled", "cuhk03_detected", "cuhk01", "custom")
KNOWN_PROFILES = ("quick", "paper")


class ParamsError(ValueError):
    """params.yaml is malformed; the message lists every problem found."""


@dataclass(frozen=True)
class ModelParams:
    backbone: str
    pretrained: str
    embedding_dim: int
    unet_width: int


@dataclass(frozen=True)
class InputParams:
    resize: tuple[int, int]
    crop: tuple[int, int]
    flip: float


@dataclass(frozen=True)
class Stage1Params:
    epochs: int
    ids_per_batch: int
    images_per_id: int
    lr: float


@dataclass(frozen=True)
class Stage2Params:
    epochs: int
    batch_size: int
    lr: float


@dataclass(frozen=True)
class Stage3Params:
    epochs: int


@dataclass(frozen=True)
class DistributedParams:
    """Training stages on several processes (torchrun); 1 = one ordinary process."""

    processes: int = 1              # processes on this node (one per GPU); the stage relaunches under torchrun
    backend: str = "auto"
    timeout_s: int = 600            # a collective waiting this long for a rank that stopped answering fails


@dataclass(frozen=True)
class EvaluationParams:
    max_rank: int
    ranks: tuple[int, ...]
    batch_size: int
    rerank: bool = False            # k-reciprocal re-ranking (Zhong et al. 2017) of the standard protocol
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3


@dataclass(frozen=True)
class SyntheticParams:
    seed: int                       # the dataset draw, separate from the training seed
    train_ids: int
    test_ids: int
    cameras: int
    images_per_camera: tuple[int, int]
    cameras_per_id: tuple[int, int]
    distractors: int
    junk: int
    height: int
    width: int


@dataclass(frozen=True)
class Cuhk01Params:
    test_ids: int                   # 485 train / 486 test identities in the usual split
    split_seed: int                 # which identities are test ones, separate from the training seed


@dataclass(frozen=True)
class DataParams:
    accept_checksum_mismatch: bool
    on_bad_image: str


@dataclass(frozen=True)
class Params:
    """Everything a stage may read, already resolved for the active profile."""

    seed: int
    datasets: tuple[str, ...]
    profile: str
    lambda1: float
    lambda2: float
    drop_ratio: float
    hiding: str
    mask_space: str
    freeze_hidden_bn: bool
    triplet_margin: float
    sparsity_weight: float
    mask_update_every: int
    precision: str
    channels_last: bool
    device: str
    evaluation: EvaluationParams
    synthetic: SyntheticParams | None      # None when its block is absent and `synthetic` is not run
    cuhk01: Cuhk01Params | None
    data: DataParams
    model: ModelParams
    input: InputParams
    stage1: Stage1Params
    stage2: Stage2Params
    stage3: Stage3Params
    cross_domain: dict[str, tuple[str, str]] = field(default_factory=dict)   # name -> (train set, test set)
    distributed: DistributedParams = field(default_factory=DistributedParams)


def load_raw(params_file: Path | str = "params.yaml", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read params.yaml with Hydra's Compose API (no outputs/ folder, no chdir, no logging setup)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    path = Path(params_file).resolve()
    if not path.is_file():
        raise ParamsError(f"{path}: parameters file not found")
    with initialize_config_dir(config_dir=str(path.parent), version_base=None):
        cfg = compose(config_name=path.stem, overrides=list(overrides))
    raw = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return raw


class _Checker:
    """Collects every problem instead of stopping at the first one."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def get(self, mapping: Any, key: str, where: str) -> Any:
        if not isinstance(mapping, dict) or key not in mapping:
            self.problems.append(f"{where}{key}: missing")
            return None
        return mapping[key]

    def number(self, mapping: Any, key: str, where: str, kind: type = float, *, low: float | None = None,
               high: float | None = None, low_open: bool = False, high_open: bool = False) -> Any:
        value = self.get(mapping, key, where)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            self.problems.append(f"{where}{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
            return None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            lo = "(" if low_open else "["
            hi = ")" if high_open else "]"
            self.problems.append(f"{where}{key}: {value!r} outside {lo}{low if low is not None else '-inf'}, "
                                 f"{high if high is not None else 'inf'}{hi}")
            return None
        return kind(value)

    def positive_int(self, mapping: Any, key: str, where: str) -> Any:
        return self.number(mapping, key, where, int, low=1)

    def pair(self, mapping: Any, key: str, where: str) -> Any:
        value = self.get(mapping, key, where)
        if value is None:
            return None
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            self.problems.append(f"{where}{key}: expected two positive integers [a, b], got {value!r}")
            return None
        return (int(value[0]), int(value[1]))

    def boolean(self, mapping: Any, key: str, where: str) -> Any:
        value = self.get(mapping, key, where)
        if value is not None and not isinstance(value, bool):
            self.problems.append(f"{where}{key}: expected true or false, got {value!r}")
            return None
        return value

    def choice(self, mapping: Any, key: str, where: str, allowed: Sequence[str]) -> Any:
        value = self.get(mapping, key, where)
        if value is None:
            return None
        if value not in allowed:
            self.problems.append(f"{where}{key}: {value!r} is not one of {', '.join(allowed)}")
            return None
        return value


def validate(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Check every field of params.yaml and build Params; raise ParamsError listing all problems."""
    c = _Checker(source)
    seed = c.number(raw, "seed", "", int, low=0)
    datasets = c.get(raw, "datasets", "")
    if datasets is not None:
        if not isinstance(datasets, list) or not datasets:
            c.problems.append(f"datasets: expected a non-empty list, got {datasets!r}")
            datasets = None
        else:
            unknown = [d for d in datasets if d not in KNOWN_DATASETS]
            if unknown:
                c.problems.append(f"datasets: unknown {unknown}; known: {', '.join(KNOWN_DATASETS)}")
    profile = c.choice(raw, "profile", "", KNOWN_PROFILES)
    lambda1 = c.number(raw, "lambda1", "", low=0.0, high=1.0)
    lambda2 = c.number(raw, "lambda2", "", low=0.0, high=1.0)
    drop_ratio = c.number(raw, "drop_ratio", "", low=0.0, high=1.0, low_open=True, high_open=True)
    hiding = c.choice(raw, "hiding", "", HIDINGS)
    mask_space = c.choice(raw, "mask_space", "", MASK_SPACES)
    freeze_hidden_bn = c.boolean(raw, "freeze_hidden_bn", "")
    margin = c.number(raw, "triplet_margin", "", low=0.0)
    sparsity_weight = c.number(raw, "sparsity_weight", "", low=0.0)
    mask_every = c.positive_int(raw, "mask_update_every", "")
    if "precision" in raw:
        c.problems.append("precision: now set per profile (profiles.<name>.precision: the paper profile trains "
                          "in fp32, quick uses auto); remove the top-level key")
    precision = None
    device = c.get(raw, "device", "")
    if device is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(device)):
        c.problems.append(f"device: {device!r}, expected auto, cpu, cuda or cuda:N")
        device = None
    channels_last = c.boolean(raw, "channels_last", "")

    ev = c.get(raw, "evaluation", "")
    evaluation = None
    if ev is not None:
        max_rank = c.positive_int(ev, "max_rank", "evaluation.")
        ranks = c.get(ev, "ranks", "evaluation.")
        if ranks is not None and (not isinstance(ranks, list) or not ranks
                                  or not all(isinstance(r, int) and r >= 1 for r in ranks)):
            c.problems.append(f"evaluation.ranks: expected a list of positive integers, got {ranks!r}")
            ranks = None
        if ranks and max_rank and max(ranks) > max_rank:
            c.problems.append(f"evaluation.ranks: {max(ranks)} is larger than evaluation.max_rank={max_rank}")
        batch = c.positive_int(ev, "batch_size", "evaluation.")
        rerank = (c.boolean(ev, "rerank", "evaluation."), c.positive_int(ev, "rerank_k1", "evaluation."),
                  c.positive_int(ev, "rerank_k2", "evaluation."),
                  c.number(ev, "rerank_lambda", "evaluation.", low=0.0, high=1.0))
        if None not in (max_rank, ranks, batch, *rerank):
            evaluation = EvaluationParams(max_rank, tuple(ranks), batch, *rerank)

    prep = c.get(raw, "prepare", "")
    if isinstance(prep, dict):
        unknown = [k for k in prep if k not in KNOWN_DATASETS]
        if unknown:
            c.problems.append(f"prepare: unknown dataset block(s) {unknown}; known: {', '.join(KNOWN_DATASETS)}")
        for ds in datasets or ():
            if ds in KNOWN_DATASETS and not isinstance(prep.get(ds), dict):
                c.problems.append(f"prepare.{ds}: missing (every dataset in `datasets` needs its block, "
                                  "`{}` when it has no settings)")
    elif prep is not None:
        c.problems.append(f"prepare: expected a mapping of dataset -> settings, got {prep!r}")
        prep = None
    # a block is required only for the datasets in `datasets` (checked above); others may be absent
    syn = prep.get("synthetic") if prep is not None else None
    synthetic = None
    if syn is not None:
        w = "prepare.synthetic."
        vals = dict(
            seed=c.number(syn, "seed", w, int, low=0),
            train_ids=c.positive_int(syn, "train_ids", w), test_ids=c.positive_int(syn, "test_ids", w),
            cameras=c.number(syn, "cameras", w, int, low=2, high=9),
            images_per_camera=c.pair(syn, "images_per_camera", w),
            cameras_per_id=c.pair(syn, "cameras_per_id", w),
            distractors=c.number(syn, "distractors", w, int, low=0), junk=c.number(syn, "junk", w, int, low=0),
            height=c.number(syn, "height", w, int, low=32), width=c.number(syn, "width", w, int, low=16),
        )
        for key in ("images_per_camera", "cameras_per_id"):
            if vals[key] and vals[key][0] > vals[key][1]:
                c.problems.append(f"{w}{key}: min {vals[key][0]} is larger than max {vals[key][1]}")
                vals[key] = None
        if vals["cameras_per_id"] and vals["cameras"] and vals["cameras_per_id"][1] > vals["cameras"]:
            c.problems.append(f"{w}cameras_per_id: max {vals['cameras_per_id'][1]} exceeds cameras={vals['cameras']}")
        if vals["cameras_per_id"] and vals["cameras_per_id"][0] < 2:
            c.problems.append(f"{w}cameras_per_id: min must be at least 2 so every query has a cross-camera match")
        if None not in vals.values():
            synthetic = SyntheticParams(**vals)
    cu = prep.get("cuhk01") if prep is not None else None
    cuhk01 = None
    if cu is not None:
        vals1 = (c.positive_int(cu, "test_ids", "prepare.cuhk01."), c.number(cu, "split_seed", "prepare.cuhk01.", int, low=0))
        if None not in vals1:
            cuhk01 = Cuhk01Params(*vals1)

    dat = c.get(raw, "data", "")
    data = None
    if dat is not None:
        accept = c.boolean(dat, "accept_checksum_mismatch", "data.")
        on_bad = c.choice(dat, "on_bad_image", "data.", ("error", "skip"))
        if None not in (accept, on_bad):
            data = DataParams(accept, on_bad)

    sections: dict[str, Any] = {}
    profiles = c.get(raw, "profiles", "")
    prof = profiles.get(profile) if isinstance(profiles, dict) and profile else None
    if profile and isinstance(profiles, dict) and prof is None:
        c.problems.append(f"profiles.{profile}: missing (profile={profile!r})")
    if isinstance(prof, dict):
        p = f"profiles.{profile}."
        precision = c.choice(prof, "precision", p, PRECISIONS)
        m = c.get(prof, "model", p)
        if m is not None:
            backbone = c.get(m, "backbone", p + "model.")
            if backbone is not None and backbone not in BACKBONES:
                c.problems.append(f"{p}model.backbone: {backbone!r} is not one of {', '.join(BACKBONES)}")
                backbone = None
            pretrained = c.get(m, "pretrained", p + "model.")
            if pretrained is not None and pretrained not in ("imagenet", "none") and not Path(str(pretrained)).is_file():
                c.problems.append(f"{p}model.pretrained: {pretrained!r} is neither 'imagenet', 'none' nor an existing file")
                pretrained = None
            emb = c.positive_int(m, "embedding_dim", p + "model.")
            unet = c.positive_int(m, "unet_width", p + "model.")
            if None not in (backbone, pretrained, emb, unet):
                sections["model"] = ModelParams(str(backbone), str(pretrained), emb, unet)
        i = c.get(prof, "input", p)
        if i is not None:
            resize, crop = c.pair(i, "resize", p + "input."), c.pair(i, "crop", p + "input.")
            flip = c.number(i, "flip", p + "input.", low=0.0, high=1.0)
            if resize and crop and (crop[0] > resize[0] or crop[1] > resize[1]):
                c.problems.append(f"{p}input.crop: {list(crop)} is larger than resize {list(resize)}")
                crop = None
            if crop and (crop[0] % 16 or crop[1] % 16):
                c.problems.append(f"{p}input.crop: {list(crop)} must be multiples of 16 (the U-Net halves it 4 times)")
                crop = None
            if None not in (resize, crop, flip):
                sections["input"] = InputParams(resize, crop, flip)
        s1 = c.get(prof, "stage1", p)
        if s1 is not None:
            v1 = (c.positive_int(s1, "epochs", p + "stage1."), c.number(s1, "ids_per_batch", p + "stage1.", int, low=2),
                  c.number(s1, "images_per_id", p + "stage1.", int, low=2),
                  c.number(s1, "lr", p + "stage1.", low=0.0, low_open=True))
            if None not in v1:
                sections["stage1"] = Stage1Params(*v1)
        s2 = c.get(prof, "stage2", p)
        if s2 is not None:
            v2 = (c.positive_int(s2, "epochs", p + "stage2."), c.positive_int(s2, "batch_size", p + "stage2."),
                  c.number(s2, "lr", p + "stage2.", low=0.0, low_open=True))
            if None not in v2:
                sections["stage2"] = Stage2Params(*v2)
        s3 = c.get(prof, "stage3", p)
        if s3 is not None:
            e3 = c.positive_int(s3, "epochs", p + "stage3.")
            if e3 is not None:
                sections["stage3"] = Stage3Params(e3)
        dd = prof.get("distributed")      # optional: absent = one process
        if dd is not None:
            w = p + "distributed."
            vd = (c.positive_int(dd, "processes", w), c.choice(dd, "backend", w, BACKENDS),
                  c.positive_int(dd, "timeout_s", w))
            if isinstance(dd, dict):
                extra = sorted(set(dd) - {"processes", "backend", "timeout_s"})
                if extra:
                    c.problems.append(f"{w[:-1]}: unknown key(s) {extra}; expected processes, backend, timeout_s")
            if None not in vd:
                sections["distributed"] = DistributedParams(*vd)

    cross_domain = _cross_domain(c, raw.get("cross_domain", {}), datasets or [])
    if c.problems:
        raise ParamsError(f"{source}: {len(c.problems)} problem(s):\n  - " + "\n  - ".join(c.problems))
    return Params(seed=seed, datasets=tuple(datasets), profile=profile, lambda1=lambda1, lambda2=lambda2,
                  drop_ratio=drop_ratio, hiding=hiding, mask_space=mask_space, freeze_hidden_bn=freeze_hidden_bn,
                  triplet_margin=margin, sparsity_weight=sparsity_weight,
                  mask_update_every=mask_every, precision=precision, device=device,
                  channels_last=channels_last, evaluation=evaluation, synthetic=synthetic, cuhk01=cuhk01, data=data,
                  cross_domain=cross_domain, **sections)


def _cross_domain(c: "_Checker", raw: Any, datasets: list[str]) -> dict[str, tuple[str, str]]:
    """`cross_domain: {name: {train: A, test: B}}`: F trained on A, scored on B's test split; both in datasets."""
    if raw is None or raw == {}:
        return {}
    if not isinstance(raw, dict):
        c.problems.append(f"cross_domain: expected a mapping name -> {{train: <dataset>, test: <dataset>}}, got {raw!r}")
        return {}
    pairs = {}
    for name, pair in raw.items():
        where = f"cross_domain.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(name)):
            c.problems.append(f"{where}: names use letters, digits, '_' and '-' (it becomes a stage and file name)")
            continue
        if not isinstance(pair, dict) or set(pair) != {"train", "test"}:
            c.problems.append(f"{where}: expected {{train: <dataset>, test: <dataset>}}, got {pair!r}")
            continue
        missing = [pair[k] for k in ("train", "test") if pair[k] not in datasets]
        if missing:
            c.problems.append(f"{where}: {missing} not in datasets {datasets} (both sets must be prepared, and the "
                              "train set trained, by their own stages)")
            continue
        if pair["train"] == pair["test"]:
            c.problems.append(f"{where}: train and test are both {pair['train']!r}; that is evaluate@{pair['train']}")
            continue
        pairs[str(name)] = (str(pair["train"]), str(pair["test"]))
    return pairs


def load_params(params_file: Path | str = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """Load and validate; the single entry point stage scripts use."""
    return validate(load_raw(params_file, overrides), str(params_file))
