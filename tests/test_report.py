import json
from pathlib import Path

import pandas as pd

from maskreid.tables.report import write_report


def _metrics(stage1: tuple[float, float], stage3: tuple[float, float], authors3: tuple[float, float]) -> dict:
    block = lambda m: {"mAP": m[0], "rank1": m[1]}  # noqa: E731
    return {"mAP": stage3[0], "rank1": stage3[1], "stage1": block(stage1), "stage3": block(stage3),
            "authors_protocol": {"stage1": block(stage1), "stage3": block(authors3)}}


def test_table1_has_published_rows_ours_and_not_run(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "market1501.json").write_text(json.dumps(_metrics((50.0, 70.0), (55.25, 75.5), (60.0, 96.0))))
    (metrics / "synthetic.json").write_text(json.dumps(_metrics((30.0, 31.0), (40.0, 41.0), (45.0, 80.0))))
    table = write_report(metrics, tmp_path / "r" / "table1.md", tmp_path / "r" / "table1.csv")
    assert len(table) == 15 + 4
    proposed = table[table.Method == "Proposed (paper)"].iloc[0]
    assert (proposed["Market1501 mAP"], proposed["Market1501 R1"], proposed["CUHK03 (D) R1"]) == ("63.9", "97.4", "92.7")
    assert table[table.Method == "ABDnet"].iloc[0]["CUHK03 (L) mAP"] == "-"
    final = table[table.Method == "maskreid final, stage 3 (standard protocol)"].iloc[0]
    assert (final["Market1501 mAP"], final["Market1501 R1"]) == ("55.2", "75.5")
    assert final["DukeMTMC-reID mAP"] == "not run" and final["CUHK03 (D) R1"] == "not run"
    audit = table[table.Method == "maskreid final, stage 3 (authors' protocol)"].iloc[0]
    assert audit["Market1501 R1"] == "96.0"
    md = (tmp_path / "r" / "table1.md").read_text()
    assert "| Top-DB-Net | 85.8 | 94.9 |" in md and "## Other datasets" in md and "| synthetic |" in md
    csv = pd.read_csv(tmp_path / "r" / "table1.csv", dtype=str)
    assert list(csv.columns)[:3] == ["Method", "Market1501 mAP", "Market1501 R1"]
    assert "0.0" not in set(csv.iloc[15:, 3:].values.ravel())


def test_old_or_partial_metrics_show_na_and_bad_json_is_named(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    old = _metrics((50.0, 70.0), (55.0, 75.0), (60.0, 96.0))
    del old["authors_protocol"]
    (metrics / "cuhk03_labeled.json").write_text(json.dumps(old))
    table = write_report(metrics, tmp_path / "t.md", tmp_path / "t.csv")
    audit = table[table.Method == "maskreid final, stage 3 (authors' protocol)"].iloc[0]
    assert audit["CUHK03 (L) mAP"] == "n/a"
    standard = table[table.Method == "maskreid final, stage 3 (standard protocol)"].iloc[0]
    assert standard["CUHK03 (L) R1"] == "75.0"
    (metrics / "market1501.json").write_text("{truncated")
    import pytest
    with pytest.raises(ValueError, match="market1501.json: not a readable metrics JSON file"):
        write_report(metrics, tmp_path / "t.md", tmp_path / "t.csv")


def test_re_ranked_numbers_are_marked_and_the_authors_protocol_is_not(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    data = {**_metrics((50.0, 70.0), (55.25, 75.5), (60.0, 96.0)), "reranking": {"used": True, "k1": 20}}
    (metrics / "market1501.json").write_text(json.dumps(data))
    table = write_report(metrics, tmp_path / "table1.md", tmp_path / "table1.csv")
    final = table[table.Method == "maskreid final, stage 3 (standard protocol)"].iloc[0]
    assert (final["Market1501 mAP"], final["Market1501 R1"]) == ("55.2 (RR)", "75.5 (RR)")
    audit = table[table.Method == "maskreid final, stage 3 (authors' protocol)"].iloc[0]
    assert audit["Market1501 R1"] == "96.0"
    assert "(RR): after k-reciprocal re-ranking" in (tmp_path / "table1.md").read_text()


def test_cross_domain_table_rows_train_columns_test(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    (metrics / "cross").mkdir(parents=True)
    block = lambda m, r: {"mAP": m, "rank1": r, "rank5": r, "mINP": m}   # noqa: E731
    (metrics / "synthetic.json").write_text(json.dumps({"stage1": block(40.0, 41.0), "stage3": block(42.0, 43.0)}))
    (metrics / "cross" / "syn_on_cuhk.json").write_text(json.dumps(
        {"train": "synthetic", "test": "cuhk01", "stage1": block(3.25, 4.0), "stage3": block(2.5, 3.0)}))
    write_report(metrics, tmp_path / "t.md", tmp_path / "t.csv")
    text = (tmp_path / "t.md").read_text()
    assert "## Cross-domain" in text
    assert "| trained on \\ tested on | cuhk01 | synthetic |" in text
    assert "| synthetic | 2.5 / 3.0 (3.2 / 4.0) | 42.0 / 43.0 (40.0 / 41.0) (in-domain) |" in text
    (metrics / "cross" / "bad.json").write_text(json.dumps({"train": "synthetic"}))
    try:
        write_report(metrics, tmp_path / "t.md", tmp_path / "t.csv")
    except ValueError as err:
        assert "bad.json: expected train, test, stage1 and stage3" in str(err)
    else:
        raise AssertionError("a malformed cross-domain file was accepted")
