"""Writing files so that a reader never sees half of one: the one atomic-write helper, on the ground floor
(datasets, methods, the runner and the report all write through it)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` for a temporary path beside ``path`` (a file or a folder), then rename it into place:
    readers see the old file or folder, or the whole new one. A folder at ``path`` is replaced; the temporary
    one is removed if writing fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")  # unique across threads
    try:
        write(tmp)
        if tmp.is_dir():
            shutil.rmtree(path, ignore_errors=True)  # os.replace cannot replace a folder that holds files
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
