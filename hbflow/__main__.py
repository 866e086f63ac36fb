"""``python -m hbflow``: the same command line as ``hbflow``."""

import sys

from ._cli import console_main

sys.exit(console_main())
