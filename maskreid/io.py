"""Files: atomic writes (a reader, DVC or a user, never sees a half-written file, even if the process is killed)
and the key of a set of files that caches are named by."""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_path(target: Path | str, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success fsync it (when `durable`) and rename it over
    `target`. The rename alone protects against a killed process; the fsync also against a power cut."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)      # mkstemp makes 0600; the result should read like any file the user writes
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if durable:
            with open(tmp_path, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(target: Path | str, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def files_key(paths: Iterable[Path | str], salt: str = "") -> str:
    """A short key that changes when any file (its path, size or modification time) or `salt` changes: the name
    of a cache built from those files (decoded images, a gallery's features), so a stale cache is never read."""
    digest = hashlib.sha256(salt.encode())
    for path in paths:
        st = os.stat(path)
        digest.update(f"\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def user_cache_dir(purpose: str) -> Path:
    """A folder of the user's cache for `purpose` (platformdirs: ~/.cache/maskreid/<purpose> on Linux,
    ~/Library/Caches/maskreid/<purpose> on macOS): caches that belong to no project folder."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("maskreid")) / purpose
