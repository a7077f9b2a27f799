"""`python -m apps` is the `maple` command (how `maple up` and the benchmarks start their children)."""

import sys

from apps.cli import main

sys.exit(main())
