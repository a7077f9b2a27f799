"""Exit codes of Maple's processes, defined once: `maple up`, orchestrators and scripts act on them."""

from __future__ import annotations

import logging
import os
from typing import NoReturn

OK = 0
FAILED = 1            # a command failed; its message says why
USAGE = 2             # bad configuration or arguments; the message names the key
NOT_RUNNING = 3       # `maple kafka status`: a node is not running
STOPPED_FOR_SAFETY = 70  # EX_SOFTWARE: a stage stopped itself rather than lose or reorder data; restart it
INTERRUPTED = 130     # Ctrl-C

log = logging.getLogger("maple")


def stop_for_safety(reason: str) -> NoReturn:
    """Exit at once, without acking or answering anything further: the state a restart resumes from (the
    last commit) is safe, while going on past `reason` would not be. The supervisor or orchestrator
    restarts the process."""
    log.critical("stopping: %s", reason)
    logging.shutdown()
    os._exit(STOPPED_FOR_SAFETY)
