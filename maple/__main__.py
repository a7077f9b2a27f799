"""`python -m maple` is the `maple` command (how `maple up` starts its children)."""

import sys

from maple.cli import main

sys.exit(main())
