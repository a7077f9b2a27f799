"""The compiled core, `maple_native` (Rust, built from native/ by `make install`), if it is installed.

It does the per-record work of the workers (OTLP request -> ClickHouse Native row blocks, RED points) and
the Native block operations; the Python processors define the behaviour it must match (the tests compare
them on the same inputs). `worker.core` chooses between them; without the module everything still works
on the Python path, more slowly.
"""

from __future__ import annotations

from types import ModuleType

core: ModuleType | None
try:
    import maple_native as _native

    core = _native
except ImportError:  # not built (no cargo when Maple was installed), or NATIVE=0 at install
    core = None

BUILD_HINT = "build it with `make install` (needs cargo), or `pip install ./native` into Maple's environment"
