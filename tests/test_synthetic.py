import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from maskreid.data.manifest import summarize
from maskreid.data.market import scan_market_folder
from maskreid.data.synthetic import generate
from maskreid.params import SyntheticParams

SMALL = SyntheticParams(seed=0, train_ids=6, test_ids=4, cameras=4, images_per_camera=(1, 2), cameras_per_id=(2, 3),
                        distractors=3, junk=2, height=64, width=32)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.jpg")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_generated_dataset_is_a_market_folder_with_distractors_and_junk(tmp_path: Path) -> None:
    n = generate(tmp_path / "a", SMALL)
    df = scan_market_folder(tmp_path / "a", max_camera=4)
    assert len(df) == n
    summary = summarize(df, "synthetic")
    assert summary.ids["train"] == 6 and summary.ids["query"] == 4
    assert summary.distractor_gallery_images == 3 and summary.junk_gallery_images == 2
    assert summary.queries_without_cross_camera_match == 0
    with Image.open(df.path.iloc[0]) as img:
        assert img.format == "JPEG" and img.size == (32, 64) and img.mode == "RGB"


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    generate(tmp_path / "a", SMALL)
    generate(tmp_path / "b", SMALL)
    generate(tmp_path / "c", SMALL.model_copy(update=dict(seed=1)))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_cameras_differ_in_appearance(tmp_path: Path) -> None:
    generate(tmp_path / "a", SMALL)
    df = scan_market_folder(tmp_path / "a")
    means = {}
    for cam, part in df.groupby("camid"):
        means[cam] = np.mean([np.asarray(Image.open(p), dtype=float).mean((0, 1)) for p in part.path], axis=0)
    spread = np.ptp(np.stack(list(means.values())), axis=0)
    assert spread.max() > 10  # per-camera colour cast and background


def test_silhouettes_mark_the_person_and_change_no_image(tmp_path: Path) -> None:
    """One 1-bit PNG per image, the same name; writing them draws no random number (the images are the same
    bytes as without them); the person is brighter or darker than nothing in particular, so check geometry:
    silhouettes cover a person-sized share, are empty on background-only junk crops at most, and the pixels
    they mark differ in colour from the image's unmarked ones (they are not a fixed shape)."""
    generate(tmp_path / "plain", SMALL)
    generate(tmp_path / "with", SMALL, tmp_path / "sil")
    assert _digest(tmp_path / "plain") == _digest(tmp_path / "with")
    images = sorted((tmp_path / "with").rglob("*.jpg"))
    silhouettes = sorted((tmp_path / "sil").rglob("*.png"))
    assert [p.relative_to(tmp_path / "with").with_suffix("") for p in images] == \
        [p.relative_to(tmp_path / "sil").with_suffix("") for p in silhouettes]
    shares, masks = [], []
    for image, sil in zip(images, silhouettes):
        person = np.asarray(Image.open(sil).convert("L")) > 0
        assert person.shape == (SMALL.height, SMALL.width)
        if not image.name.startswith("-1_"):
            shares.append(person.mean())
            masks.append(person)
    assert 0.08 < np.mean(shares) < 0.45 and min(shares) > 0.02
    assert np.std(np.stack(masks).astype(float), axis=0).mean() > 0.1       # silhouettes differ between images
