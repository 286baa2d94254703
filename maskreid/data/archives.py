"""Getting raw archives onto disk safely: download (when reachable), checksum, extraction that cannot
escape its folder, and a completion marker written last so a partial job never passes for a finished one."""

from __future__ import annotations

import hashlib
import shutil
import stat
import tarfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from maskreid.io import atomic_path

MARKER = ".maskreid_complete"


class ArchiveError(RuntimeError):
    """An archive is missing, corrupt, does not match its checksum, or holds unsafe members."""


def file_hash(path: Path, algorithm: str = "md5", chunk: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: Path, expected: str | None, algorithm: str = "md5", accept_mismatch: bool = False) -> str:
    """Compare the file's digest with `expected`; a mismatch is an error unless explicitly accepted."""
    actual = file_hash(path, algorithm)
    if expected and actual != expected.lower() and not accept_mismatch:
        raise ArchiveError(f"{path}: {algorithm} is {actual}, expected {expected}. The file may be incomplete, "
                           "corrupt or a different release. Replace it, or set accept_checksum_mismatch: true "
                           "in params.yaml if you know this file is right.")
    return actual


def download(url: str, target: Path) -> Path:
    """Download with a progress bar to a temporary file, renamed into place only when complete."""
    with atomic_path(target) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                received = 0
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {target.name}") as bar:
                    while block := response.read(1 << 20):
                        out.write(block)
                        received += len(block)
                        bar.update(len(block))
            if total is not None and received != total:
                raise ArchiveError(f"downloading {url} to {target} failed: connection closed after {received} "
                                   f"of {total} bytes")
        except OSError as err:
            raise ArchiveError(f"downloading {url} to {target} failed: {err}") from err
    return target


def _safe_member_path(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")) or ".." in path.parts:
        raise ArchiveError(f"{archive}: refusing member {name!r}: it would be written outside the target folder")
    return path


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> None:
    for info in zf.infolist():
        _safe_member_path(info.filename, archive)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ArchiveError(f"{archive}: refusing symbolic link member {info.filename!r}")


def _check_tar(tf: tarfile.TarFile, archive: Path) -> None:
    for member in tf.getmembers():
        _safe_member_path(member.name, archive)
        if member.issym() or member.islnk():
            raise ArchiveError(f"{archive}: refusing link member {member.name!r} -> {member.linkname!r}")
        if not (member.isfile() or member.isdir()):
            raise ArchiveError(f"{archive}: refusing special member {member.name!r} (device, fifo...)")


def extract(archive: Path, target: Path) -> Path:
    """Extract a .zip or .tar(.gz) into `target` after checking every member; write the marker last.

    Members are validated before anything is written, so an unsafe archive writes nothing at all.
    """
    archive, target = Path(archive), Path(target)
    if (target / MARKER).is_file():
        return target
    staging = target.with_name(target.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _check_zip(zf, archive)
                zf.extractall(staging)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                _check_tar(tf, archive)
                tf.extractall(staging, filter="data")
        else:
            raise ArchiveError(f"{archive}: not a zip or tar archive (truncated download?)")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ArchiveError(f"{archive}: corrupt archive ({err})") from err
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    (target / MARKER).write_text(f"extracted from {archive.name}\n")
    return target
