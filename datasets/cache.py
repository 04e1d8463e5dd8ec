"""On-disk cache of decoded (and optionally resized) arrays, keyed by the file's content.

A second run over the same data loads ``.npy`` files instead of decoding PNG, BMP, JPEG or TIFF again.

Staleness: an entry's name is a BLAKE2b hash of the source file's bytes plus what was done to them (the
kind of decoding, the target size, ``CACHE_VERSION``), so a changed file (even one rewritten with the
same size and modification time, as ``cp -p`` or ``rsync -t`` leave it) gets a new key and is decoded
afresh; an entry can never be served for content it was not made from. The cost is reading the whole
file to hash it on every load, which is cheaper than decoding it. Keys by path, size and mtime would skip
that read but can go stale, so they are not used.

Safety: entries are written to a temporary name and renamed into place, so an interrupted or concurrent
write leaves no half-written entry under a real name; an unreadable entry is treated as a miss and
rewritten. The folder may be deleted at any time (``rm -rf ~/.cache/segbench``). When it cannot be
written (read-only, full disk), loading goes on without caching.

Where: ``$SEGBENCH_CACHE_DIR`` if set (``off``, ``0``, ``none`` or an empty value turn caching off), else
``$XDG_CACHE_HOME/segbench``, else ``~/.cache/segbench``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segbench.datasets.errors import DataError
from segbench.files import write_atomic

__all__ = ["CACHE_VERSION", "CACHE_ENV", "cache_dir", "cached_decode", "content_key"]

#: Part of every key: bump it when a conversion in ``segbench.datasets.io`` changes what it returns.
CACHE_VERSION = 1
CACHE_ENV = "SEGBENCH_CACHE_DIR"
_OFF = {"", "0", "off", "none", "false", "no"}
_warned: set[str] = set()


def cache_dir() -> Path | None:
    """The cache folder now in force, or None when caching is off (read on every call, so tests may set it)."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "segbench"


def content_key(data: bytes) -> str:
    """40 hex digits of BLAKE2b over ``data``: the identity of a file's content."""
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path or the dataset's --data-dir")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc}); check its permissions or copy it again") from exc


def _load(entry: Path) -> np.ndarray | None:
    try:
        return np.load(entry, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError):  # a damaged entry: decode again and overwrite it
        return None


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would add ".npy" to a temporary name
        np.save(f, array, allow_pickle=False)


def _store(entry: Path, array: np.ndarray) -> None:
    try:  # atomic: readers see the old entry, no entry, or the whole new one
        write_atomic(entry, lambda p: _write_npy(p, array))
    except OSError as exc:
        root = str(entry.parents[3])
        if root not in _warned:  # once per folder: a read-only cache must not flood the log
            _warned.add(root)
            warnings.warn(f"segbench cache {root} is not writable ({exc}); loading without caching", stacklevel=3)


def cached_decode(
    path: str | Path,
    kind: str,
    decode: Callable[[bytes], np.ndarray],
    *,
    variant: str = "",
) -> np.ndarray:
    """Return ``decode(<bytes of path>)``, from the cache when an entry for this content exists.

    Args:
        path: The source file.
        kind: What ``decode`` does (``"image"``, ``"mask"``...): part of the key, so two decodings of one file
            never collide.
        decode: Bytes of the file -> array; it should raise ``DataError`` naming ``path`` on bad content
            (nothing is cached then).
        variant: Anything else that changes the result (a target size such as ``"64x48"``), also in the key.

    Returns:
        The decoded array (a fresh, writable array on every call).
    """
    path = Path(path)
    data = _read_bytes(path)
    root = cache_dir()
    if root is None:
        return decode(data)
    key = content_key(data)
    suffix = f"-{variant}" if variant else ""
    entry = root / f"v{CACHE_VERSION}" / kind / key[:2] / f"{key}{suffix}.npy"
    array = _load(entry)
    if array is None:
        array = decode(data)
        _store(entry, array)
    return array
