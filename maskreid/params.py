"""Load params.yaml (through Hydra's Compose API: its override grammar, the one `dvc exp run -S` speaks) and
turn it into typed, validated, frozen settings: one set of pydantic models is both the file's schema and what the
stages read (`Params`: the file with the active profile's blocks in place of `profiles`).

Validation happens before any work, and before torch is imported, so that a broken params.yaml fails in well
under a second with one message that lists every problem, instead of after minutes of training.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
MASK_UPSAMPLING_INITS = ("default", "nearest")  # how M's transposed convs start (maskreid.models.unet)
MASK_SPACES = ("pixel", "normalized")  # where M(a)*a and the hiding act (maskreid.models.masking.apply_soft_mask)
BACKENDS = ("auto", "gloo", "nccl")    # torch.distributed: auto = nccl with CUDA GPUs, gloo on CPUs
# Stage 3's hidden pixels: M's top drop_ratio (the paper), or controls (docs/ablation.md)
HIDINGS = ("learned", "random_blocks", "random_pixels", "none")
SCHEDULES = ("constant", "cosine")     # F's learning rate over a stage's epochs (maskreid.train.schedule)
# Backbones checked to build with timm as F's trunk (tests/test_models.py); listed here so that validation
# needs no torch import and can name the allowed values. resnetblur*: the same ResNets with blur pooling before
# every stride-2 step (anti-aliased, Zhang 2019), the test of whether M's masks follow F's sampling lattice
# (docs/ablation.md, "The grid of squares is F's").
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50d", "resnext50_32x4d",
             "seresnet50", "densenet121", "efficientnet_b0", "mobilenetv3_large_100", "convnext_tiny",
             "resnetblur18", "resnetblur50")
# Backbones whose channels `model.width` can scale: timm's ResNet family (its `channels`; the stem keeps its width)
WIDTH_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50d", "resnext50_32x4d",
                   "seresnet50", "resnetblur18", "resnetblur50")
RESNET_WIDTH = 64                      # the first stage's channels of a ResNet as published
KNOWN_DATASETS = ("synthetic", "market1501", "dukemtmcreid", "cuhk03_labeled", "cuhk03_detected", "cuhk01", "custom")
KNOWN_PROFILES = ("quick", "paper")
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"   # params `device`, and `--device` of maskreid extract/search


class ParamsError(ValueError):
    """params.yaml is malformed; the message lists every problem found."""


# --- the schema: strict types (no "3" for 3), unknown keys refused, frozen ----------------------------------
# pydantic reports every field problem of one validation at once; the few checks between fields run as model
# validators (they run when the fields they compare are valid) and, for the checks across the whole file
# (datasets vs prepare blocks, the active profile, cross_domain), in `_cross_checks` on the raw mapping.

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
OpenFraction = Annotated[float, Field(gt=0.0, lt=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Count = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
_StrictCount = Annotated[int, Strict(), Field(ge=1)]
# YAML has lists, the stages want tuples: the container is converted, its items stay strict integers
Pair = Annotated[tuple[_StrictCount, _StrictCount], Field(strict=False)]
Counts = Annotated[tuple[_StrictCount, ...], Field(strict=False, min_length=1)]


def _problem(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


class ModelParams(_Strict):
    backbone: Literal[BACKBONES]                           # type: ignore[valid-type]
    pretrained: str
    embedding_dim: Count
    unet_width: Count
    last_stride: Literal[1, 2] = 2  # F's last-stage stride: 2 = torchvision's ResNet, 1 = BoT's (2x larger map)
    width: Annotated[int, Field(ge=8, multiple_of=8)] = RESNET_WIDTH  # F's first-stage channels, doubled per stage

    @model_validator(mode="after")
    def _width_fits(self) -> "ModelParams":
        if self.width != RESNET_WIDTH and self.backbone not in WIDTH_BACKBONES:
            raise _problem("width", f"width {self.width} needs a ResNet backbone ({', '.join(WIDTH_BACKBONES)}); "
                                    f"{self.backbone!r} keeps its published width ({RESNET_WIDTH})")
        if self.width != RESNET_WIDTH and self.pretrained == "imagenet":
            raise _problem("width", f"width {self.width} has no ImageNet weights (they have width {RESNET_WIDTH}): "
                                    "set pretrained: none or a weights file of that width")
        return self

    @field_validator("pretrained")
    @classmethod
    def _weights_exist(cls, value: str) -> str:
        if value not in ("imagenet", "none") and not Path(value).is_file():
            raise _problem("pretrained", "neither 'imagenet', 'none' nor an existing file")
        return value


class InputParams(_Strict):
    resize: Pair                    # (h, w) every image is resized to
    crop: Pair                      # (h, w) random crop in training, centre crop at test time
    flip: Fraction

    @model_validator(mode="after")
    def _crop_fits(self) -> "InputParams":
        if self.crop[0] > self.resize[0] or self.crop[1] > self.resize[1]:
            raise _problem("crop", f"crop {list(self.crop)} is larger than resize {list(self.resize)}")
        if self.crop[0] % 16 or self.crop[1] % 16:
            raise _problem("crop", f"crop {list(self.crop)} must be multiples of 16 (the U-Net halves it 4 times)")
        return self


class Stage1Params(_Strict):
    epochs: Count
    ids_per_batch: Annotated[int, Field(ge=2)]
    images_per_id: Annotated[int, Field(ge=2)]
    lr: Positive
    schedule: Literal[SCHEDULES] = "constant"             # type: ignore[valid-type]
    warmup_epochs: NonNegInt = 0    # linear warm-up epochs before the schedule (stages 1 and 3)

    @model_validator(mode="after")
    def _warmup_fits(self) -> "Stage1Params":
        if self.warmup_epochs >= self.epochs:
            raise _problem("warmup", f"warmup_epochs={self.warmup_epochs} leaves no epoch of epochs={self.epochs}")
        return self


class Stage2Params(_Strict):
    epochs: Count
    batch_size: Count
    lr: Positive


class Stage3Params(_Strict):
    epochs: Count
    lr: Positive | None = None      # F's rate in stage 3 (stage 1's schedule restarted); None: stage1.lr


class DistributedParams(_Strict):
    """Training stages on several processes (torchrun); 1 = one ordinary process."""

    processes: Count = 1            # processes on this node (one per GPU); the stage relaunches under torchrun
    backend: Literal[BACKENDS] = "auto"                    # type: ignore[valid-type]
    timeout_s: Count = 600          # a collective waiting this long for a rank that stopped answering fails


class ValidationParams(_Strict):
    """Validation during training on identities held out of the training split (not the test set)."""

    eval_every: NonNegInt = 0       # epochs between validations of F (stages 1 and 3); 0: off, every id trains
    ids: Annotated[int, Field(ge=2)] = 50    # identities held out when eval_every > 0


class ProfileParams(_Strict):
    precision: Literal[PRECISIONS]                         # type: ignore[valid-type]
    distributed: DistributedParams = DistributedParams()
    validation: ValidationParams = ValidationParams()
    model: ModelParams
    input: InputParams
    stage1: Stage1Params
    stage2: Stage2Params
    stage3: Stage3Params


class EvaluationParams(_Strict):
    max_rank: Count
    ranks: Counts
    batch_size: Count
    rerank: bool = False            # k-reciprocal re-ranking (Zhong et al. 2017) of the standard protocol
    rerank_k1: Count = 20
    rerank_k2: Count = 6
    rerank_lambda: Fraction = 0.3
    flip_tta: bool = False          # embedding = mean of the image's and its mirror image's
    aqe: bool = False               # alpha query expansion (fast-reid's aqe) before ranking (and re-ranking)
    aqe_k: Count = 5
    aqe_alpha: NonNegative = 3.0
    bootstrap_resamples: Annotated[int, Field(ge=100)] = 1000    # 95% intervals over query identities
    page_queries: NonNegInt = 20    # the failure page: this many worst queries by AP and as many random ones

    @model_validator(mode="after")
    def _ranks_fit(self) -> "EvaluationParams":
        if max(self.ranks) > self.max_rank:
            raise _problem("ranks", f"rank {max(self.ranks)} is larger than max_rank={self.max_rank}")
        return self


class SyntheticParams(_Strict):
    seed: NonNegInt                 # the dataset draw, separate from the training seed
    train_ids: Count
    test_ids: Count
    cameras: Annotated[int, Field(ge=2, le=9)]
    images_per_camera: Pair
    cameras_per_id: Pair
    distractors: NonNegInt
    junk: NonNegInt
    height: Annotated[int, Field(ge=32)]
    width: Annotated[int, Field(ge=16)]

    @model_validator(mode="after")
    def _ranges(self) -> "SyntheticParams":
        for key in ("images_per_camera", "cameras_per_id"):
            low, high = getattr(self, key)
            if low > high:
                raise _problem("range", f"{key}: min {low} is larger than max {high}")
        if self.cameras_per_id[1] > self.cameras:
            raise _problem("range", f"cameras_per_id: max {self.cameras_per_id[1]} exceeds cameras={self.cameras}")
        if self.cameras_per_id[0] < 2:
            raise _problem("range", "cameras_per_id: min must be at least 2 so every query has a cross-camera match")
        return self


class Cuhk01Params(_Strict):
    test_ids: Count                 # 485 train / 486 test identities in the usual split
    split_seed: NonNegInt           # which identities are test ones, separate from the training seed


class _NoSettings(_Strict):
    """A dataset block with nothing to set: `{}`."""


class PrepareParams(_Strict):
    synthetic: SyntheticParams | None = None
    market1501: _NoSettings | None = None
    dukemtmcreid: _NoSettings | None = None
    cuhk03_labeled: _NoSettings | None = None
    cuhk03_detected: _NoSettings | None = None
    cuhk01: Cuhk01Params | None = None
    custom: _NoSettings | None = None


class DataParams(_Strict):
    accept_checksum_mismatch: bool
    on_bad_image: Literal["error", "skip"]


class _Method(_Strict):
    """The top-level settings, as written in params.yaml and as the stages read them."""

    seed: NonNegInt
    datasets: Annotated[tuple[Literal[KNOWN_DATASETS], ...], Field(strict=False, min_length=1)]  # type: ignore[valid-type]
    profile: Literal[KNOWN_PROFILES]                       # type: ignore[valid-type]
    lambda1: Fraction
    lambda2: Fraction
    drop_ratio: OpenFraction
    hiding: Literal[HIDINGS]                               # type: ignore[valid-type]
    mask_space: Literal[MASK_SPACES]                       # type: ignore[valid-type]
    mask_upsampling_init: Literal[MASK_UPSAMPLING_INITS]   # type: ignore[valid-type]
    freeze_hidden_bn: bool
    triplet_margin: NonNegative
    sparsity_weight: NonNegative
    mask_update_every: Count
    device: Annotated[str, Field(pattern=DEVICE_PATTERN)]
    channels_last: bool
    evaluation: EvaluationParams
    data: DataParams


class ParamsFile(_Method):
    """params.yaml as written: every profile is checked, not only the active one."""

    cross_domain: dict[str, Any] = {}                      # checked in _cross_checks (needs `datasets`)
    prepare: PrepareParams
    profiles: dict[str, ProfileParams]


class Params(_Method, ProfileParams):
    """Everything a stage may read, resolved for the active profile: its blocks (ProfileParams' fields) take the
    place of `profiles`, so a new profile setting is declared once."""

    synthetic: SyntheticParams | None = None   # None when its block is absent and `synthetic` is not run
    cuhk01: Cuhk01Params | None = None
    cross_domain: dict[str, tuple[str, str]] = {}          # name -> (train set, test set)


def load_raw(params_file: Path | str = "params.yaml", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read params.yaml with Hydra's Compose API (no outputs/ folder, no chdir, no logging setup)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    path = Path(params_file).resolve()
    if not path.is_file():
        raise ParamsError(f"{path}: parameters file not found")
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base=None):
            cfg = compose(config_name=path.stem, overrides=list(overrides))
    except HydraException as err:     # a bad override (syntax, or a key params.yaml lacks without `+`)
        raise ParamsError(f"{path}: overrides {list(overrides)}: {err}") from None
    raw = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return raw


_EXPECTED = {"missing": "missing", "extra_forbidden": "unknown key (a typo? see params.yaml's comments)"}


def _describe(error: Mapping[str, Any]) -> str:
    """One line per problem: where (dotted path), what is wrong, and the value found."""
    where = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden" and error["loc"] == ("precision",):
        return ("precision: now set per profile (profiles.<name>.precision: the paper profile trains in fp32, "
                "quick uses auto); remove the top-level key")
    if kind in _EXPECTED:
        return f"{where}: {_EXPECTED[kind]}"
    message = error["msg"].removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if kind == "string_pattern_mismatch" and where == "device":
        message = "expected auto, cpu, cuda or cuda:N"
    found = error.get("input")
    shown = "" if isinstance(found, dict) else f", got {found!r}"
    return f"{where}: {message}{shown}" if where else f"{message}{shown}"


def _cross_checks(raw: Mapping[str, Any]) -> list[str]:
    """What no single block can check: every dataset run has its prepare block, the active profile exists,
    cross_domain pairs name datasets that run. On the raw mapping, so they are reported with the rest."""
    problems = []
    datasets = [d for d in raw.get("datasets") or [] if d in KNOWN_DATASETS] \
        if isinstance(raw.get("datasets"), list) else []
    prepare = raw.get("prepare")
    if isinstance(prepare, dict):
        for ds in datasets:
            if not isinstance(prepare.get(ds), dict):
                problems.append(f"prepare.{ds}: missing (every dataset in `datasets` needs its block, `{{}}` when "
                                "it has no settings)")
    profiles, profile = raw.get("profiles"), raw.get("profile")
    if isinstance(profiles, dict) and profile in KNOWN_PROFILES and profile not in profiles:
        problems.append(f"profiles.{profile}: missing (profile={profile!r})")
    return problems + _cross_domain(raw.get("cross_domain", {}), datasets)


def validate(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Check params.yaml (types, ranges, unknown keys, the links between fields) and build Params for the
    active profile; raise ParamsError listing every problem in one message."""
    problems = _cross_checks(raw) if isinstance(raw, dict) else []
    checked = None
    try:
        checked = ParamsFile.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(e) for e in err.errors()] + problems
    if problems:
        raise ParamsError(f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    assert checked is not None
    return _resolve(checked)


def _resolve(f: ParamsFile) -> Params:
    """The active profile's blocks in place of `profiles`; the prepare blocks a stage reads; cross_domain pairs."""
    method = {name: getattr(f, name) for name in _Method.model_fields}
    profile = {name: getattr(f.profiles[f.profile], name) for name in ProfileParams.model_fields}
    return Params(**method, **profile, synthetic=f.prepare.synthetic, cuhk01=f.prepare.cuhk01,
                  cross_domain={name: (pair["train"], pair["test"]) for name, pair in f.cross_domain.items()})


def _cross_domain(raw: Any, datasets: list[str]) -> list[str]:
    """`cross_domain: {name: {train: A, test: B}}`: F trained on A, scored on B's test split; both in datasets."""
    if raw is None or raw == {}:
        return []
    if not isinstance(raw, dict):
        return [f"cross_domain: expected a mapping name -> {{train: <dataset>, test: <dataset>}}, got {raw!r}"]
    problems = []
    for name, pair in raw.items():
        where = f"cross_domain.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(name)):
            problems.append(f"{where}: names use letters, digits, '_' and '-' (it becomes a stage and file name)")
        elif not isinstance(pair, dict) or set(pair) != {"train", "test"}:
            problems.append(f"{where}: expected {{train: <dataset>, test: <dataset>}}, got {pair!r}")
        elif missing := [pair[k] for k in ("train", "test") if pair[k] not in datasets]:
            problems.append(f"{where}: {missing} not in datasets {datasets} (both sets must be prepared, and the "
                            "train set trained, by their own stages)")
        elif pair["train"] == pair["test"]:
            problems.append(f"{where}: train and test are both {pair['train']!r}; that is evaluate@{pair['train']}")
    return problems


def load_params(params_file: Path | str = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """Load and validate; the single entry point stage scripts use."""
    return validate(load_raw(params_file, overrides), str(params_file))
