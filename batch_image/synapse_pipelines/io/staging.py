"""Output paths checked before any work, and results written aside then put in place.

:func:`check_creatable` refuses, before an input is read, an output that cannot be created
(under a file, in a read-only place). :func:`staged_folder` yields a hidden temporary folder
to write a results folder into and moves its content into place only once it is complete:
an interrupted run (Ctrl-C, an error, a kill) leaves no half-written results folder, and the
results of an earlier run are replaced only by complete new ones.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from synapse_pipelines.io.ome_tiff import UMASK, OutputError

_STAGING = ".partial-"  # hidden (dot) names: never listed as results nor mistaken for them


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_creatable(path: str | Path, *, option: str, folder: bool) -> None:
    """Refuse (an :class:`OutputError` naming ``option``) a ``path`` that cannot be
    written: a folder (``folder``) or a file in a folder under an existing file, or in a
    place where nothing can be created. Creates nothing that stays."""
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise OutputError(f"{path} is a file", field=option, hint="pass a folder path")
        if not folder and path.is_dir():
            raise OutputError(f"{path} is a folder", field=option, hint="pass a file path")
        place = path if folder else path.parent
    else:
        place = _nearest_existing(path.parent)
    if not place.is_dir():
        raise OutputError(
            f"{path} cannot be created: {place} is a file",
            field=option,
            hint="pass a path that is not under a file",
        )
    try:  # a real probe: permissions, read-only and virtual file systems (/proc), quotas
        tempfile.TemporaryDirectory(prefix=_STAGING + "probe-", dir=place).cleanup()
    except OSError as exc:
        raise OutputError(
            f"{path} cannot be created: nothing can be written in {place} ({exc.strerror})",
            field=option,
            hint="pass a path in a writable folder",
        ) from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _remove_stale(place: Path, prefix: str) -> None:
    """Delete staging folders a killed run (kill -9) left in ``place``: those whose process
    is gone. A live run's stays."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    for entry in place.glob(prefix + "*"):
        found = pattern.match(entry.name)
        if found and entry.is_dir() and not _pid_alive(int(found.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(
    folder: str | Path, *, clear: Callable[[Path], object], last: str
) -> Iterator[Path]:
    """Yield an empty hidden folder to write ``folder``'s new content into.

    On success: a new ``folder`` is the staged one renamed (atomic); into an existing one
    (which may hold other files), ``clear(folder)`` first removes the earlier results, then
    each staged entry is moved in, ``last`` (the manifest, which marks a complete results
    folder) at the end. On any exception or Ctrl-C the staged folder is deleted and
    ``folder`` is left as it was.
    """
    folder = Path(folder)
    exists = folder.is_dir()
    place = folder if exists else folder.parent
    prefix = _STAGING if exists else f".{folder.name}{_STAGING}"
    place.mkdir(parents=True, exist_ok=True)
    _remove_stale(place, prefix)
    staged = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=place))
    try:
        yield staged
        if not exists:
            os.chmod(staged, 0o777 & ~UMASK)  # mkdtemp makes 0700; results are for sharing
            os.rename(staged, folder)
            return
        clear(folder)
        entries = sorted(staged.iterdir(), key=lambda p: p.name == last)
        for entry in entries:
            os.replace(entry, folder / entry.name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
