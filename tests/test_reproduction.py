"""`maskreid check-reproduction`: the same precision must agree to the rounding, other precisions within the
stated tolerance; a missing file is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maskreid.tables.reproduction import ReproductionError, compare_runs, render


def _metrics(shift: float = 0.0, precision: str = "fp32") -> dict:
    return {"stage1": {"mAP": 38.5 + shift, "rank1": 38.5}, "stage3": {"mAP": 42.49 + shift, "rank1": 43.0 + shift},
            "trained_in": precision}


def test_same_precision_must_agree_to_the_rounding() -> None:
    assert compare_runs(_metrics(), _metrics(), 3.0)["reproduced"]
    result = compare_runs(_metrics(0.01), _metrics(), 3.0)
    assert not result["reproduced"] and result["same_precision"] and result["tolerance"] == 1e-3
    assert "outside the tolerance" in render(result) and "NOT reproduced" in render(result)


def test_another_precision_may_move_within_the_tolerance() -> None:
    result = compare_runs(_metrics(2.5, "bf16"), _metrics(), 3.0)
    assert result["reproduced"] and not result["same_precision"] and "up to 3.0 points" in render(result)
    assert not compare_runs(_metrics(3.5, "bf16"), _metrics(), 3.0)["reproduced"]
    assert not compare_runs(_metrics(0.5, None), _metrics(), 3.0)["same_precision"]     # unknown: not assumed same


def test_a_missing_number_is_named() -> None:
    broken = _metrics()
    del broken["stage3"]["rank1"]
    with pytest.raises(ReproductionError, match="stage3.rank1 missing"):
        compare_runs(broken, _metrics(), 3.0)


def test_cli_without_a_run_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from maskreid.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["check-reproduction"]) == 1
    assert "metrics/synthetic.json: not found; run `dvc repro` first" in capsys.readouterr().err
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "synthetic.json").write_text(json.dumps(_metrics()))
    assert main(["check-reproduction", "--against", "HEAD"]) == 1          # not a repository: named, no traceback
    assert "HEAD:metrics/synthetic.json: cannot be read" in capsys.readouterr().err
