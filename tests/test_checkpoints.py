import os
from pathlib import Path

import pytest
import torch

from maskreid.models.checkpoints import CheckpointError, load_checkpoint, save_checkpoint


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch marker_file_created_by_pickle",))


def test_round_trip_and_no_temporary_left(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.pt", {"extractor": {"w": torch.ones(2)}, "epoch": 3})
    back = load_checkpoint(tmp_path / "c.pt", required=("extractor",))
    assert back["epoch"] == 3 and torch.equal(back["extractor"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_atomic_files_get_the_users_usual_permissions(tmp_path: Path) -> None:
    """mkstemp's 0600 must not leak into results that teammates or a web server read."""
    from maskreid.io import atomic_write_text

    atomic_write_text(tmp_path / "m.json", "{}")
    save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(1)})
    plain = tmp_path / "plain.txt"
    plain.write_text("x")                                   # what open() gives under this umask
    for made in ("m.json", "c.pt"):
        assert (tmp_path / made).stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_corrupt_file_is_not_called_code(tmp_path: Path) -> None:
    (tmp_path / "c.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=r"c\.pt: not a readable checkpoint \(corrupt, truncated"):
        load_checkpoint(tmp_path / "c.pt")


def test_pickled_code_is_refused_and_never_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save({"extractor": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "marker_file_created_by_pickle").exists()


def test_missing_field_and_missing_file_are_named(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.pt", {"mask": {}})
    with pytest.raises(CheckpointError, match=r"missing field\(s\) \['extractor'\]"):
        load_checkpoint(tmp_path / "c.pt", required=("extractor",))
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
