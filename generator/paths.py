"""Where things are: the project, ../shared beside it, the cache."""

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
# the QEMU source packages (qemu-src/) and the guest (guest/) this
# project is tested with
SHARED = PROJECT.parent / "shared"


def cache_dir() -> Path:
    """$GEN_SERIES_CACHE (unset or empty: ~/.cache/gen-series): unpacked
    trees, builds, guest files, compiled templates."""
    root = os.environ.get("GEN_SERIES_CACHE") or \
        Path.home() / ".cache" / "gen-series"
    return Path(root)
