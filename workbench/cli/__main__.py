"""`python -m workbench.cli`, the same as `python -m workbench` and `workbench`."""

import sys

from workbench.cli import main

sys.exit(main())
