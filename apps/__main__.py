"""`python -m apps` is the `maple` command (how `maple up` and the benchmarks start their children)."""

import sys

from apps.cli import main

# The guard matters: processes started with multiprocessing's "spawn" (the ingest's parse processes)
# import the parent's main module under another name, and must not run the command line again.
if __name__ == "__main__":
    sys.exit(main())
