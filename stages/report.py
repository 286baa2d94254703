"""DVC stage report: Table 1 regenerated from every metrics/<dataset>.json present."""

import sys
from pathlib import Path

from maskreid.console import report_error
from maskreid.tables.report import write_report

if __name__ == "__main__":
    try:
        write_report(Path("metrics"), Path("reports/table1.md"), Path("reports/table1.csv"))
    except ValueError as err:
        sys.exit(report_error(err))
