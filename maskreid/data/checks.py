"""Decode every image once at preparation time, so training never meets a bad file mid-epoch."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm


def image_problem(path: Path | str) -> str | None:
    """Why the file cannot be used as an RGB image, or None if it decodes fully."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()                     # full decode: catches truncated data, not only the header
                if img.width < 2 or img.height < 2:
                    return f"image too small ({img.width}x{img.height})"
                img.convert("RGB")
    except UnidentifiedImageError:
        return "not an image (unrecognised format)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as err:
        return f"cannot be decoded ({str(err).splitlines()[0] if str(err) else err.__class__.__name__})"
    return None


def find_bad_images(paths: Sequence[str], root: Path = Path(".")) -> list[tuple[str, str]]:
    """(path, reason) for every file in `paths` that does not decode."""
    bad = []
    for path in tqdm(paths, desc="checking images", unit="img", leave=False):
        reason = image_problem(root / path)
        if reason is not None:
            bad.append((path, reason))
    return bad
