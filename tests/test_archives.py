import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from maskreid.data.archives import MARKER, ArchiveError, extract, file_hash, verify_checksum


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extracts_and_writes_marker_last(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"top/x.txt": b"x", "top/sub/y.txt": b"y"})
    out = extract(archive, tmp_path / "out")
    assert (out / "top" / "sub" / "y.txt").read_bytes() == b"y"
    assert (out / MARKER).is_file()
    assert not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("evil", ["../escape.txt", "/abs/escape.txt", "top/../../escape.txt"])
def test_zip_members_outside_the_target_are_refused_and_nothing_is_written(tmp_path: Path, evil: str) -> None:
    archive = _zip(tmp_path / "evil.zip", {"ok.txt": b"fine", evil: b"pwned"})
    with pytest.raises(ArchiveError, match="outside the target folder"):
        extract(archive, tmp_path / "x" / "out")
    assert not (tmp_path / "x" / "out").exists()
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "x" / "escape.txt").exists()


def test_zip_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("top/link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract(archive, tmp_path / "out")


def _tar(path: Path, add) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        add(tf)
    return path


def test_tar_links_and_traversal_are_refused(tmp_path: Path) -> None:
    def symlink(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("top/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        tf.addfile(info)

    def hardlink(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("top/hard")
        info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
        tf.addfile(info)

    def traversal(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("../../evil.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))

    for name, add, message in (("s", symlink, "link member"), ("h", hardlink, "link member"),
                               ("t", traversal, "outside the target")):
        with pytest.raises(ArchiveError, match=message):
            extract(_tar(tmp_path / f"{name}.tar.gz", add), tmp_path / name / "out")
        assert not (tmp_path / name / "out").exists()
    # "../../evil.txt" from tmp_path/t/out (or its partial folder) would land in tmp_path: look everywhere near
    landed = [p for p in tmp_path.rglob("evil.txt")] + [p for p in [tmp_path.parent / "evil.txt"] if p.exists()]
    assert landed == []


def test_partial_extraction_is_redone(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"top/x.txt": b"x"})
    stale = tmp_path / "out"
    (stale / "top").mkdir(parents=True)
    (stale / "top" / "half.txt").write_text("from a killed run, no marker")
    extract(archive, stale)
    assert not (stale / "top" / "half.txt").exists() and (stale / MARKER).is_file()


def test_truncated_archive_is_a_clear_error(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"top/x.txt": b"x" * 1000})
    truncated = tmp_path / "t.zip"
    truncated.write_bytes(archive.read_bytes()[:60])
    with pytest.raises(ArchiveError, match="not a zip or tar archive|corrupt"):
        extract(truncated, tmp_path / "out")


def test_checksum_mismatch_is_an_error_unless_accepted(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    assert file_hash(path) == "5d41402abc4b2a76b9719d911017c592"
    verify_checksum(path, "5d41402abc4b2a76b9719d911017c592")
    with pytest.raises(ArchiveError, match="md5 is 5d41.*expected 0000.*accept_checksum_mismatch"):
        verify_checksum(path, "0" * 32)
    assert verify_checksum(path, "0" * 32, accept_mismatch=True) == "5d41402abc4b2a76b9719d911017c592"


class _Server:
    """A real HTTP server on localhost: serves `payload`, or cuts the connection half-way."""

    def __init__(self, payload: bytes, cut: bool) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2] if cut else payload)
                if cut:
                    self.wfile.flush()
                    self.connection.close()

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/archive.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def test_download_is_complete_or_absent(tmp_path: Path) -> None:
    from maskreid.data.archives import download
    from maskreid.net import is_reachable

    payload = bytes(range(256)) * 4000
    server = _Server(payload, cut=False)
    try:
        assert is_reachable(server.url)
        target = download(server.url, tmp_path / "archive.zip")
        assert target.read_bytes() == payload
    finally:
        server.close()
    broken = _Server(payload, cut=True)
    try:
        with pytest.raises(ArchiveError, match="failed"):
            download(broken.url, tmp_path / "cut.zip")
        assert not (tmp_path / "cut.zip").exists()
        assert [p.name for p in tmp_path.iterdir()] == ["archive.zip"]   # no partial file left behind
    finally:
        broken.close()
