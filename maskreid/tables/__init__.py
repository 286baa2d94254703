"""Tables built from results: Table 1 (report.py) and the masks ablation (ablation.py)."""
