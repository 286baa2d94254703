"""DVC stage report: Table 1 regenerated from every metrics/<dataset>.json present."""

from pathlib import Path

from maskreid.report import write_report

if __name__ == "__main__":
    write_report(Path("metrics"), Path("reports/table1.md"), Path("reports/table1.csv"))
