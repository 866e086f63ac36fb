"""``python -m hbflow``: the same command line as ``hbflow``."""

import sys

from ._cli import main

sys.exit(main())
