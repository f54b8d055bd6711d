"""``python -m agr_suite.data_staging``: see agr_suite/data_staging/cli.py."""

import sys

from agr_suite.data_staging.cli import main

sys.exit(main())
