"""`python -m maskreid`: the same command as `maskreid`."""

import sys

from maskreid.cli import main

sys.exit(main())
