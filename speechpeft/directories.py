"""Directories replaced whole, so a crash at any moment leaves a complete version on disk.

A writer builds the new version in `NAME.tmp` (`staging_directory`), then `replace_directory` moves the
current `NAME` aside to `NAME.old`, renames `NAME.tmp` to `NAME` and deletes `NAME.old`. A crash between
those two renames leaves no `NAME`, only `NAME.old`: `recover_directory` puts it back. Readers call it
before they look, and `staging_directory` calls it before a writer starts over.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGING_SUFFIX = ".tmp"  # the next version, being written
RETIRED_SUFFIX = ".old"  # the previous version, between the two renames of a swap


def staged_path(target: Path) -> Path:
    return target.with_name(target.name + STAGING_SUFFIX)


def retired_path(target: Path) -> Path:
    return target.with_name(target.name + RETIRED_SUFFIX)


def recover_directory(target: Path) -> None:
    """Restore `target` from `target.old` when a swap was interrupted between its two renames.

    Leaves a half-written `target.tmp` alone (a writer may still be filling it). Raises OSError when the
    rename is refused (a read-only install, for one).
    """
    target = Path(target)
    retired = retired_path(target)
    if retired.is_dir() and not target.exists():
        retired.replace(target)


def staging_directory(target: Path) -> Path:
    """The empty (not yet created) `target.tmp` a writer fills before `replace_directory`.

    Recovers `target` first and deletes what an interrupted writer left in `target.tmp`.
    """
    target = Path(target)
    recover_directory(target)
    staged = staged_path(target)
    shutil.rmtree(staged, ignore_errors=True)
    return staged


def replace_directory(staged: Path, target: Path) -> None:
    """Put the complete directory `staged` in place of `target` (which may not exist yet).

    Until the last rename `target` or `target.old` holds the previous version, so a crash loses nothing that
    `recover_directory` cannot bring back; an exception from that rename puts the previous version back and
    propagates. Raises FileNotFoundError when `staged` does not exist.
    """
    staged, target = Path(staged), Path(target)
    if not staged.is_dir():
        raise FileNotFoundError(f"nothing staged at {staged} to replace {target} with")
    retired = retired_path(target)
    if target.exists():
        shutil.rmtree(retired, ignore_errors=True)  # a stale one, left after a swap that completed
        target.replace(retired)
    try:
        staged.replace(target)
    except BaseException:
        recover_directory(target)
        raise
    shutil.rmtree(retired, ignore_errors=True)


@contextmanager
def staged_replacement(target: Path) -> Iterator[Path]:
    """Yield `staging_directory(target)` to fill; it replaces `target` when the block ends without raising.

    When the block raises, the staged copy is deleted, `target` stays as it was, and the exception propagates.
    """
    staged = staging_directory(target)
    try:
        yield staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    replace_directory(staged, target)
