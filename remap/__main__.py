"""``python -m remap``."""

import sys

from .cli import main

sys.exit(main())
