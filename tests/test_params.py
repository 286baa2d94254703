import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from maskreid.params import ParamsError, load_params
from tests.conftest import REPO


def _write(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_repository_params_are_valid_and_faithful_to_the_paper() -> None:
    p = load_params(REPO / "params.yaml")
    assert (p.lambda1, p.lambda2, p.drop_ratio, p.triplet_margin) == (0.9, 0.95, 0.3, 1.0)
    paper = load_params(REPO / "params.yaml", overrides=["profile=paper"])
    assert paper.model.backbone == "resnet50" and paper.model.pretrained == "imagenet"
    assert paper.model.embedding_dim == 512 and paper.model.unet_width == 32
    assert (paper.input.resize, paper.input.crop, paper.input.flip) == ((234, 117), (224, 112), 0.5)
    assert (paper.stage1.epochs, paper.stage2.epochs, paper.stage3.epochs) == (50, 25, 100)
    assert (paper.stage1.ids_per_batch, paper.stage1.images_per_id, paper.stage1.lr) == (20, 3, 2e-4)
    assert paper.precision == "fp32" and p.precision == "auto"      # precision belongs to the profile


def test_top_level_precision_is_refused_with_where_it_went(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"precision: now set per profile \(profiles.<name>.precision"):
        load_params(_write(tmp_path, lambda raw: raw.update(precision="fp32")))


def test_override_syntax_as_dvc_exp_run_uses_it() -> None:
    assert load_params(REPO / "params.yaml", overrides=["lambda1=0.8"]).lambda1 == 0.8


def test_every_problem_is_listed_in_one_message(tmp_path: Path) -> None:
    def edit(raw: dict) -> None:
        raw["lambda1"] = 1.5
        raw["drop_ratio"] = 1.0
        raw["datasets"] = ["synthetic", "mars"]
        raw["profiles"]["quick"]["model"]["backbone"] = "resnet5000"
        raw["profiles"]["quick"]["model"]["pretrained"] = "/no/such/weights.pth"
        raw["profiles"]["quick"]["input"]["crop"] = [200, 64]
        raw["profiles"]["quick"]["stage1"]["epochs"] = 0
        raw["profiles"]["quick"]["precision"] = "fp8"
        raw["channels_last"] = "yes"
        raw["evaluation"]["rerank"] = 1
        raw["evaluation"]["rerank_lambda"] = 2
        raw["hiding"] = "random"
        raw["prepare"]["synthetic"]["seed"] = -1
        raw["prepare"].pop("cuhk01")
        raw["datasets"].append("cuhk01")
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, edit))
    message = str(err.value)
    assert "14 problem(s)" in message
    for expected in ("hiding: input should be 'learned', 'random_blocks', 'random_pixels' or 'none', got 'random'",
                     "prepare.synthetic.seed: input should be greater than or equal to 0, got -1",
                     "prepare.cuhk01: missing", "lambda1: input should be less than or equal to 1, got 1.5",
                     "drop_ratio: input should be less than 1, got 1.0", "datasets.1: input should be 'synthetic'",
                     "got 'mars'", "profiles.quick.model.backbone: input should be 'resnet18', 'resnet34'",
                     "pretrained: neither 'imagenet', 'none' nor an existing file, got '/no/such/weights.pth'",
                     "profiles.quick.input: crop [200, 64] is larger than resize [134, 67]",
                     "profiles.quick.stage1.epochs: input should be greater than or equal to 1, got 0",
                     "profiles.quick.precision: input should be 'auto', 'bf16', 'fp16' or 'fp32', got 'fp8'",
                     "channels_last: input should be a valid boolean, got 'yes'",
                     "evaluation.rerank: input should be a valid boolean, got 1",
                     "evaluation.rerank_lambda: input should be less than or equal to 1, got 2"):
        assert expected in message


def test_a_misspelt_key_is_refused_not_ignored(tmp_path: Path) -> None:
    """pydantic's extra="forbid": `lamda1: 0.8` must not leave lambda1 silently at its old value."""
    def edit(raw: dict) -> None:
        raw["lamda1"] = 0.8
        raw["profiles"]["paper"]["stage1"]["epoch"] = 5          # the inactive profile is checked too
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, edit))
    message = str(err.value)
    assert "2 problem(s)" in message and "lamda1: unknown key" in message
    assert "profiles.paper.stage1.epoch: unknown key" in message


def test_validation_during_training_is_per_profile_and_checked(tmp_path: Path) -> None:
    p = load_params(REPO / "params.yaml")
    assert (p.validation.eval_every, p.validation.ids) == (0, 50)          # off by default: every id trains
    on = load_params(REPO / "params.yaml", overrides=["profiles.quick.validation.eval_every=2"])
    assert on.validation.eval_every == 2
    with pytest.raises(ParamsError, match="profiles.quick.validation.ids: input should be greater than or equal to 2"):
        load_params(_write(tmp_path, lambda raw: raw["profiles"]["quick"]["validation"].update(ids=1)))


def test_missing_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="lambda2: missing"):
        load_params(_write(tmp_path, lambda raw: raw.pop("lambda2")))


def test_stage_with_broken_params_fails_before_importing_torch(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda raw: raw.update(lambda1=-0.1))
    probe = ("import sys; sys.argv = ['train_joint', 'synthetic', '--params', %r]\n"
             "from maskreid.pipeline.runner import run_stage\n"
             "try:\n    run_stage('stage 3', 'maskreid.pipeline.train:train_stage3')\n"
             "except SystemExit as e:\n    print('exit', e.code, 'torch' in sys.modules)\n") % str(path)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.strip() == "exit 1 False"      # stopped with a message; torch never imported
    assert "lambda1: input should be greater than or equal to 0, got -0.1" in result.stderr and "Traceback" not in result.stderr


def test_cross_domain_pairs_must_name_prepared_datasets(tmp_path: Path) -> None:
    def edit(raw: dict) -> None:
        raw["datasets"] = ["synthetic", "custom"]
        raw["cross_domain"] = {"ok": {"train": "synthetic", "test": "custom"}, "self": {"train": "custom", "test": "custom"},
                               "far": {"train": "synthetic", "test": "market1501"}, "bad name": {"train": "a", "test": "b"}}
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, edit))
    message = str(err.value)
    assert "3 problem(s)" in message and "cross_domain.self: train and test are both 'custom'" in message
    assert "cross_domain.far: ['market1501'] not in datasets" in message and "cross_domain.bad name: names use" in message
    ok = load_params(_write(tmp_path, lambda raw: (edit(raw), raw["cross_domain"].pop("self"), raw["cross_domain"].pop("far"),
                                                   raw["cross_domain"].pop("bad name"))))
    assert ok.cross_domain == {"ok": ("synthetic", "custom")}


def test_device_setting_is_checked_and_a_missing_gpu_is_an_error(tmp_path: Path) -> None:
    import torch

    from maskreid.runtime.device import pick_device

    with pytest.raises(ParamsError, match="device: expected auto, cpu, cuda or cuda:N, got 'gpu'"):
        load_params(_write(tmp_path, lambda raw: raw.update(device="gpu")))
    assert load_params(_write(tmp_path, lambda raw: raw.update(device="cuda:1"))).device == "cuda:1"
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="GPU"):
            pick_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(RuntimeError, match="device: 'cuda:1', but torch sees no CUDA GPU"):
            pick_device("cuda:1")


def test_distributed_setting_is_per_profile_and_checked(tmp_path: Path) -> None:
    p = load_params(REPO / "params.yaml")
    assert (p.distributed.processes, p.distributed.backend) == (1, "auto")

    def edit(raw: dict) -> None:
        raw["profiles"]["quick"]["distributed"] = {"processes": 0, "backend": "mpi", "timeout_s": 600, "nodes": 2}

    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, edit))
    text = str(err.value)
    assert "profiles.quick.distributed.processes: input should be greater than or equal to 1, got 0" in text
    assert "profiles.quick.distributed.backend: input should be 'auto', 'gloo' or 'nccl', got 'mpi'" in text
    assert "profiles.quick.distributed.nodes: unknown key" in text
    two = load_params(REPO / "params.yaml", overrides=["profiles.quick.distributed.processes=2"])
    assert two.distributed.processes == 2


def test_a_training_stage_relaunches_itself_under_torchrun() -> None:
    """The DVC cmd stays `python -m stages.<stage> <ds>`; with processes > 1 it becomes this torchrun command."""
    from maskreid.train.launch import torchrun_argv

    argv = torchrun_argv(4, [str(REPO / "stages/train_joint.py"), "market1501", "--params", "p.yaml"])
    assert argv[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "--max-restarts=0"]
    assert argv[-3:] == ["market1501", "--params", "p.yaml"]


def test_a_bad_override_is_one_clear_error() -> None:
    """Hydra's grammar, as `dvc exp run -S` and `maskreid diagnose-masks --set` take it: a key params.yaml
    lacks, or broken syntax, is a ParamsError naming the override, not Hydra's traceback."""
    with pytest.raises(ParamsError, match=r"overrides \['nokey=1'\]: Could not override 'nokey'"):
        load_params(REPO / "params.yaml", overrides=["nokey=1"])
    with pytest.raises(ParamsError, match=r"overrides \['lambda1==='\]"):
        load_params(REPO / "params.yaml", overrides=["lambda1==="])
    with pytest.raises(ParamsError, match="lambda1: input should be less than or equal to 1, got 1.5"):
        load_params(REPO / "params.yaml", overrides=["lambda1=1.5"])


# the quick profile as those checkpoints were trained (ResNet-18 at its published width, 30/4/12 epochs, 2e-4)
EARLIER_QUICK = [f"profiles.quick.{key}" for key in (
    "model.width=64", "stage1.epochs=30", "stage1.lr=0.0002", "stage1.schedule=constant", "stage1.warmup_epochs=0",
    "stage3.epochs=12", "stage3.lr=null")]


@pytest.mark.parametrize("overrides, hashes", [
    (EARLIER_QUICK, ("6414aa91fbcb321a", "411839e7ef8f7105", "16f583f8e2ed6ae4")),
    (["profile=paper"], ("8ae32d00de9d15db", "3c409214ac9dc3da", "875f5610c0176da2")),
    ([*EARLIER_QUICK, "hiding=none", "mask_space=normalized", "freeze_hidden_bn=false",
      "profiles.quick.validation.eval_every=2", "mask_upsampling_init=nearest"],
     ("de5f26104bc4c7f3", "50a210ceffa3bac1", "1c9118dcc3fa69f8")),
])
def test_settings_hashes_are_those_earlier_checkpoints_recorded(overrides: list[str], hashes: tuple[str, ...]) -> None:
    """Checkpoints and progress files carry a hash of the settings their stage read (ModelSpec.params_hash, the
    resume fingerprint). The values here were computed by the schema of frozen dataclasses this one replaced:
    a change of the schema's types or field names must not orphan the models users already trained."""
    from maskreid.models.spec import settings_hash
    from maskreid.pipeline.train import _stage_settings

    params = load_params(REPO / "params.yaml", overrides=overrides)
    assert tuple(settings_hash(_stage_settings(params, stage)) for stage in (1, 2, 3)) == hashes


def test_the_resolved_settings_are_frozen_and_typed() -> None:
    from pydantic import ValidationError

    p = load_params(REPO / "params.yaml")
    assert p.input.crop == (128, 64) and isinstance(p.evaluation.ranks, tuple) and p.datasets == ("synthetic",)
    with pytest.raises(ValidationError):
        p.model.backbone = "resnet50"                      # the stages cannot change what the file says


def test_width_is_checked_against_the_backbone_and_the_weights(tmp_path: Path) -> None:
    """F's width scales ResNets trained from scratch (or from a file of that width); elsewhere it is refused by
    params validation, before any network is built."""
    model = "profiles.quick.model"
    assert load_params(REPO / "params.yaml", overrides=[f"{model}.width=48"]).model.width == 48
    for overrides, expected in (
            ([f"{model}.width=20"], f"{model}.width: input should be a multiple of 8, got 20"),
            ([f"{model}.width=32", f"{model}.backbone=densenet121"],
             f"{model}: width 32 needs a ResNet backbone .* 'densenet121' keeps its published width"),
            ([f"{model}.width=32", f"{model}.pretrained=imagenet"],
             f"{model}: width 32 has no ImageNet weights")):
        with pytest.raises(ParamsError, match=expected):
            load_params(REPO / "params.yaml", overrides=overrides)
