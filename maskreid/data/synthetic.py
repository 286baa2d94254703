"""The embedded dataset: rendered pedestrians in the Market-1501 layout, deterministic from a seed.

It is built to look like a re-ID problem rather than a toy. Identities share a small colour palette (so a
colour histogram confuses many of them) and differ in body shape, clothing pattern, sleeves, trousers/shorts/
skirt, hair or hat, shoes and bags. Each camera has its own background, viewpoint habit (front/back/side),
illumination and colour cast, blur, resolution and JPEG quality; every image adds pose, scale and position
jitter and, sometimes, an occluder. Distractors (id 0000) and junk (id -1) are written into the gallery.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from maskreid.params import SyntheticParams

PALETTE = np.array([
    (200, 30, 35), (30, 60, 170), (35, 130, 50), (235, 200, 40), (245, 245, 240), (25, 25, 28),
    (120, 120, 125), (120, 70, 35), (230, 120, 160), (110, 40, 140), (240, 130, 30), (60, 170, 190),
], dtype=np.float32)
SKIN = np.array([(250, 210, 180), (225, 175, 135), (180, 125, 85), (120, 80, 55), (85, 55, 40)], dtype=np.float32)
PATTERNS = ("plain", "hstripes", "vstripes", "checks", "logo", "twotone")
BOTTOMS = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "handbag", "shoulder")
VIEWS = ("front", "back", "left", "right")


@dataclass(frozen=True)
class Person:
    """Appearance of one identity; fixed across cameras."""

    height: float       # fraction of the frame height the person fills
    width: float        # body width factor (build)
    leg_ratio: float    # legs as a fraction of the body
    skin: np.ndarray
    hair: np.ndarray
    hat: np.ndarray | None
    top: np.ndarray
    top2: np.ndarray
    pattern: str
    long_sleeves: bool
    bottom: np.ndarray
    bottom_kind: str
    shoes: np.ndarray
    bag: str
    bag_colour: np.ndarray


@dataclass(frozen=True)
class Camera:
    """Everything that one camera adds to every image it takes."""

    bg_top: np.ndarray
    bg_bottom: np.ndarray
    bg_kind: int        # 0 windows, 1 trees, 2 stripes, 3 plain wall with posters
    view: str           # habitual viewpoint
    cast: np.ndarray    # per-channel gain
    brightness: float
    blur: float
    downscale: float    # resolution loss factor (1 = none)
    jpeg_quality: int


def _colour(rng: np.random.Generator, table: np.ndarray, jitter: float = 18.0) -> np.ndarray:
    return np.clip(table[rng.integers(len(table))] + rng.normal(0, jitter, 3), 0, 255)


def random_person(rng: np.random.Generator) -> Person:
    top = _colour(rng, PALETTE)
    return Person(
        height=float(rng.uniform(0.78, 0.95)), width=float(rng.uniform(0.75, 1.3)),
        leg_ratio=float(rng.uniform(0.42, 0.52)), skin=_colour(rng, SKIN, 8),
        hair=_colour(rng, PALETTE[[5, 7, 3, 6]], 10), hat=_colour(rng, PALETTE) if rng.random() < 0.25 else None,
        top=top, top2=_colour(rng, PALETTE), pattern=str(rng.choice(PATTERNS)),
        long_sleeves=bool(rng.random() < 0.5), bottom=_colour(rng, PALETTE),
        bottom_kind=str(rng.choice(BOTTOMS, p=[0.6, 0.2, 0.2])), shoes=_colour(rng, PALETTE[[4, 5, 6, 7]], 10),
        bag=str(rng.choice(BAGS, p=[0.4, 0.25, 0.15, 0.2])), bag_colour=_colour(rng, PALETTE),
    )


def random_camera(rng: np.random.Generator, index: int) -> Camera:
    return Camera(
        bg_top=rng.uniform(40, 220, 3), bg_bottom=rng.uniform(40, 200, 3), bg_kind=index % 4,
        view=VIEWS[index % 4], cast=rng.uniform(0.75, 1.25, 3), brightness=float(rng.uniform(0.65, 1.25)),
        blur=float(rng.choice([0.0, 0.4, 0.8, 1.2])), downscale=float(rng.choice([1.0, 1.0, 1.6, 2.2])),
        jpeg_quality=int(rng.integers(55, 95)),
    )


class _SilhouetteDraw:
    """Draws on the image and, in one value, on the silhouette canvas: 255 where the person is drawn, 0 where an
    occluder covers it. Consumes no random numbers, so the images are the same with or without silhouettes."""

    def __init__(self, image: ImageDraw.ImageDraw, silhouette: ImageDraw.ImageDraw | None, value: int) -> None:
        self.image, self.silhouette, self.value = image, silhouette, value

    def __getattr__(self, shape: str):
        def draw(*args, **kwargs):
            getattr(self.image, shape)(*args, **kwargs)
            if self.silhouette is not None:
                getattr(self.silhouette, shape)(*args, **{**kwargs, "fill": self.value})
        return draw


def _fill(c: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def _background(draw: ImageDraw.ImageDraw, cam: Camera, rng: np.random.Generator, w: int, h: int) -> None:
    floor = int(h * rng.uniform(0.62, 0.75))
    for y in range(h):
        t = y / h
        colour = cam.bg_top * (1 - t) + cam.bg_bottom * t
        if y > floor:
            colour = colour * 0.7
        draw.line([(0, y), (w, y)], fill=_fill(colour))
    accent = np.clip(cam.bg_top[::-1] + rng.normal(0, 25, 3), 0, 255)
    if cam.bg_kind == 0:
        for x in range(int(rng.integers(0, w // 4)), w, w // 3):
            for y in range(h // 10, floor - h // 8, h // 5):
                draw.rectangle([x, y, x + w // 6, y + h // 10], fill=_fill(accent))
    elif cam.bg_kind == 1:
        for _ in range(3):
            x = rng.uniform(0, w)
            draw.ellipse([x - w / 4, h * 0.05, x + w / 4, h * 0.4], fill=_fill(accent * [0.5, 1.0, 0.5]))
            draw.rectangle([x - w / 30, h * 0.35, x + w / 30, floor], fill=_fill(accent * 0.4))
    elif cam.bg_kind == 2:
        for y in range(floor, h, h // 16):
            draw.line([(0, y), (w, y + h // 20)], fill=_fill(accent), width=max(1, h // 60))
    else:
        for _ in range(2):
            x, y = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.4)
            draw.rectangle([x, y, x + w * 0.25, y + h * 0.18], fill=_fill(rng.uniform(0, 255, 3)))


def _torso_pattern(draw: ImageDraw.ImageDraw, p: Person, box: tuple[float, float, float, float], view: str) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=_fill(p.top))
    if p.pattern == "hstripes":
        step = (y1 - y0) / 6
        for i in range(0, 6, 2):
            draw.rectangle([x0, y0 + i * step, x1, y0 + (i + 1) * step], fill=_fill(p.top2))
    elif p.pattern == "vstripes":
        step = (x1 - x0) / 5
        for i in range(0, 5, 2):
            draw.rectangle([x0 + i * step, y0, x0 + (i + 1) * step, y1], fill=_fill(p.top2))
    elif p.pattern == "checks":
        sx, sy = (x1 - x0) / 4, (y1 - y0) / 5
        for i in range(4):
            for j in range(5):
                if (i + j) % 2:
                    draw.rectangle([x0 + i * sx, y0 + j * sy, x0 + (i + 1) * sx, y0 + (j + 1) * sy], fill=_fill(p.top2))
    elif p.pattern == "logo" and view == "front":
        cx, cy = (x0 + x1) / 2, y0 + (y1 - y0) * 0.4
        r = (x1 - x0) * 0.22
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_fill(p.top2))
    elif p.pattern == "twotone":
        draw.rectangle([x0, y0, x1, y0 + (y1 - y0) * 0.35], fill=_fill(p.top2))


def _person(draw: ImageDraw.ImageDraw, p: Person, view: str, rng: np.random.Generator, w: int, h: int,
            scale: float) -> None:
    total = h * p.height * scale
    cx = w / 2 + rng.normal(0, w * 0.05)
    feet = min(h - 1.0, h * 0.5 + total / 2 + rng.normal(0, h * 0.02))
    top_y = feet - total
    head_h = total * 0.13
    side = view in ("left", "right")
    half_w = w * 0.17 * p.width * (0.65 if side else 1.0)
    shoulder_y = top_y + head_h * 1.1
    hip_y = feet - total * p.leg_ratio
    stride = rng.uniform(0.0, 0.5) * half_w * (1.6 if side else 0.6)
    swing = rng.uniform(-0.4, 0.4) * half_w
    leg_w = half_w * 0.45
    # Backpack behind the body in back/side views.
    if p.bag == "backpack" and view != "front":
        off = 0 if view == "back" else (-half_w * 0.9 if view == "right" else half_w * 0.9)
        draw.rounded_rectangle([cx - half_w * 0.8 + off, shoulder_y + total * 0.03, cx + half_w * 0.8 + off,
                                shoulder_y + (hip_y - shoulder_y) * 0.8], radius=3, fill=_fill(p.bag_colour))
    # Legs.
    for sign in (-1, 1):
        foot_x = cx + sign * (leg_w * 0.6 + stride / 2)
        hip_x = cx + sign * leg_w * 0.6
        draw.line([(hip_x, hip_y), (foot_x, feet - total * 0.03)], fill=_fill(p.bottom), width=int(leg_w * 1.1))
        if p.bottom_kind == "shorts":
            mid = (hip_y + feet) / 2
            draw.line([((hip_x + foot_x) / 2, mid), (foot_x, feet - total * 0.03)], fill=_fill(p.skin),
                      width=int(leg_w * 0.8))
        draw.ellipse([foot_x - leg_w * 0.8, feet - total * 0.045, foot_x + leg_w * 0.8, feet], fill=_fill(p.shoes))
    if p.bottom_kind == "skirt":
        draw.polygon([(cx - half_w * 0.9, hip_y - total * 0.02), (cx + half_w * 0.9, hip_y - total * 0.02),
                      (cx + half_w * 1.3, hip_y + total * 0.2), (cx - half_w * 1.3, hip_y + total * 0.2)],
                     fill=_fill(p.bottom))
    # Torso with its pattern.
    _torso_pattern(draw, p, (cx - half_w, shoulder_y, cx + half_w, hip_y + total * 0.02), view)
    if p.bag == "backpack" and view == "front":
        for sign in (-1, 1):
            draw.line([(cx + sign * half_w * 0.5, shoulder_y), (cx + sign * half_w * 0.6, hip_y - total * 0.08)],
                      fill=_fill(p.bag_colour), width=max(1, int(half_w * 0.2)))
    # Arms.
    arm_colour = p.top if p.long_sleeves else p.skin
    for sign in ((-1, 1) if not side else (1 if view == "right" else -1,)):
        sx = cx + sign * half_w * (1.0 if not side else 0.2)
        hand = (sx + swing * sign * 0.3 + (swing if side else 0), hip_y + total * 0.05)
        draw.line([(sx, shoulder_y + 2), hand], fill=_fill(arm_colour), width=int(half_w * 0.4))
        if p.long_sleeves:
            draw.ellipse([hand[0] - 2, hand[1] - 2, hand[0] + 2, hand[1] + 2], fill=_fill(p.skin))
        if p.bag == "handbag" and sign == 1:
            draw.rectangle([hand[0] - half_w * 0.35, hand[1], hand[0] + half_w * 0.35, hand[1] + total * 0.12],
                           fill=_fill(p.bag_colour))
    if p.bag == "shoulder":
        draw.line([(cx - half_w * 0.8, shoulder_y), (cx + half_w * 0.9, hip_y - total * 0.02)],
                  fill=_fill(p.bag_colour * 0.8), width=max(1, int(half_w * 0.15)))
        draw.rectangle([cx + half_w * 0.7, hip_y - total * 0.08, cx + half_w * 1.4, hip_y + total * 0.04],
                       fill=_fill(p.bag_colour))
    # Head, hair or hat.
    head_w = head_h * 0.75
    hx0, hy0 = cx - head_w / 2, top_y
    draw.ellipse([hx0, hy0, hx0 + head_w, hy0 + head_h], fill=_fill(p.hair if view == "back" else p.skin))
    draw.chord([hx0, hy0, hx0 + head_w, hy0 + head_h * 0.9], 180, 360, fill=_fill(p.hair))
    if p.hat is not None:
        draw.rectangle([hx0 - 1, hy0 - head_h * 0.1, hx0 + head_w + 1, hy0 + head_h * 0.3], fill=_fill(p.hat))


def _occluder(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    colour = _fill(rng.uniform(20, 235, 3))
    kind = rng.integers(3)
    if kind == 0:   # a car or bench across the lower part
        top = h * rng.uniform(0.6, 0.8)
        draw.rounded_rectangle([-5, top, w + 5, h + 5], radius=6, fill=colour)
    elif kind == 1:  # a pole or pillar
        x = rng.uniform(0.15, 0.85) * w
        draw.rectangle([x - w * 0.08, 0, x + w * 0.08, h], fill=colour)
    else:            # another passer-by, from the side
        x = rng.choice([-0.05, 0.85]) * w
        draw.ellipse([x, h * 0.25, x + w * 0.35, h * 1.05], fill=colour)


def render(person: Person | None, cam: Camera, rng: np.random.Generator, height: int, width: int,
           occlusion: float = 0.25, crop_junk: bool = False) -> tuple[Image.Image, Image.Image]:
    """Render one camera image of `person` (None: background only) at height x width pixels, and its
    silhouette: a mode-"L" image, 255 on the visible person, 0 elsewhere (background, occluders)."""
    ss = 2  # supersampling for anti-aliased edges
    w, h = width * ss, height * ss
    img = Image.new("RGB", (w, h))
    sil = Image.new("L", (w, h), 0)
    draw, sil_draw = ImageDraw.Draw(img), ImageDraw.Draw(sil)
    _background(draw, cam, rng, w, h)
    view = cam.view if rng.random() < 0.7 else str(rng.choice(VIEWS))
    if person is not None:
        _person(_SilhouetteDraw(draw, sil_draw, 255), person, view, rng, w, h, scale=float(rng.uniform(0.85, 1.08)))
    if rng.random() < occlusion:
        _occluder(_SilhouetteDraw(draw, sil_draw, 0), rng, w, h)
    if crop_junk:  # junk: a badly placed detection box showing a fragment of a person or none at all
        fx, fy = rng.uniform(0.3, 0.6, 2)
        x0, y0 = rng.uniform(0, 1 - fx) * w, rng.uniform(0, 1 - fy) * h
        box = (int(x0), int(y0), int(x0 + fx * w), int(y0 + fy * h))
        img, sil = img.crop(box), sil.crop(box)
    small = (int(width / cam.downscale), int(height / cam.downscale))
    img = img.resize(small, Image.BILINEAR).resize((width, height), Image.BILINEAR)
    sil = sil.resize(small, Image.BILINEAR).resize((width, height), Image.BILINEAR).point(lambda v: 255 * (v >= 128))
    if cam.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(cam.blur))
    pixels = np.asarray(img, dtype=np.float32)
    gain = cam.cast * cam.brightness * rng.uniform(0.85, 1.15)
    pixels = pixels * gain + rng.normal(0, 4.0, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), sil


def generate(out_dir: Path, params: SyntheticParams, silhouette_dir: Path | None = None) -> int:
    """Write the dataset under out_dir in the Market-1501 layout; return the number of images written. With
    `silhouette_dir`, each image's silhouette goes there as a 1-bit PNG under the same relative name (the
    ground truth for measuring whether M's masks hide the person or the background)."""
    rng = np.random.default_rng(params.seed)
    cameras = [random_camera(rng, i) for i in range(params.cameras)]
    n_ids = params.train_ids + params.test_ids
    pids = np.sort(rng.choice(np.arange(1, 10 * n_ids + 2), size=n_ids, replace=False))
    order = rng.permutation(n_ids)
    train_pids = set(pids[order[:params.train_ids]].tolist())
    folders = {s: out_dir / s for s in ("bounding_box_train", "bounding_box_test", "query")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    frame = 0
    written = 0

    def save(rendered: tuple[Image.Image, Image.Image], folder: str, pid: int, cam_index: int) -> None:
        nonlocal frame, written
        img, sil = rendered
        frame += int(rng.integers(1, 40))
        name = f"{pid:04d}" if pid >= 0 else "-1"
        path = folders[folder] / f"{name}_c{cam_index + 1}s1_{frame:06d}_01.jpg"
        img.save(path, quality=cameras[cam_index].jpeg_quality)
        if silhouette_dir is not None:
            target = silhouette_dir / folder / f"{path.stem}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            sil.convert("1").save(target)
        written += 1

    lo_c, hi_c = params.cameras_per_id
    lo_i, hi_i = params.images_per_camera
    for pid in pids.tolist():
        person = random_person(rng)
        cams = rng.choice(params.cameras, size=int(rng.integers(lo_c, hi_c + 1)), replace=False)
        is_train = pid in train_pids
        query_cams = set() if is_train else set(rng.choice(cams, size=min(2, len(cams)), replace=False).tolist())
        for cam in cams.tolist():
            for _ in range(int(rng.integers(lo_i, hi_i + 1))):
                save(render(person, cameras[cam], rng, params.height, params.width),
                     "bounding_box_train" if is_train else "bounding_box_test", pid, cam)
            if cam in query_cams:
                save(render(person, cameras[cam], rng, params.height, params.width), "query", pid, cam)
    for _ in range(params.distractors):
        cam = int(rng.integers(params.cameras))
        save(render(random_person(rng), cameras[cam], rng, params.height, params.width), "bounding_box_test", 0, cam)
    for _ in range(params.junk):
        cam = int(rng.integers(params.cameras))
        person = random_person(rng) if rng.random() < 0.5 else None
        save(render(person, cameras[cam], rng, params.height, params.width, crop_junk=True), "bounding_box_test", -1,
             cam)
    return written
