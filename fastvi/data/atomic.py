"""Files that appear whole or not at all: atomic writes, full-disk safe HDF5 output.

Every file fastvi writes (model files, checkpoints, predict and score outputs, generated
data sets) goes through ``atomic_path`` or ``atomic_h5``: the bytes go to a private
temporary file beside the target, which is renamed into place only when complete, so a
reader never sees half a file and a killed writer leaves only a temporary that the next
writer of the same path removes.

This module imports nothing from fastvi but ``interrupts`` (of its own layer): every layer
may use it.
"""
import errno
import io
import os
import secrets
from contextlib import contextmanager

import h5py

from .interrupts import held

def _umask():
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid):
    """Whether process ``pid`` exists (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False                    # not a pid at all
    return True


_TEMP_SUFFIX = ".tmp"


def _temp_prefix(path):
    return "." + os.path.basename(path) + "."


def remove_stale_temps(path):
    """Remove the temporary files that killed writers of ``path`` left beside it.

    ``atomic_path`` names its temporary ``.NAME.<pid>.<random>.tmp``; one whose process
    no longer runs was left by a writer that was killed (SIGKILL, a crash, a power cut)
    before it could remove it.  Those of live processes are never touched, nor are
    files of any other form.

    Parameters
    ----------
    path : str or os.PathLike
        The final file name whose leftovers to remove.

    Returns
    -------
    list of str
        The paths removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(path)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_TEMP_SUFFIX)):
            continue
        pid, _, token = name[len(prefix):-len(_TEMP_SUFFIX)].partition(".")
        if not (pid.isdigit() and token) or _pid_alive(int(pid)):
            continue
        stale = os.path.join(directory, name)
        try:
            os.remove(stale)
        except FileNotFoundError:
            continue                    # another job cleaned it up first
        except OSError:
            continue                    # not ours to remove (permissions): leave it
        removed.append(stale)
    return removed


def _make_temp(path, directory):
    """Create ``.NAME.<pid>.<random>.tmp`` in ``directory`` (mode 0600); its path."""
    prefix = _temp_prefix(path) + f"{os.getpid()}."
    while True:
        tmp = os.path.join(directory, prefix + secrets.token_hex(4) + _TEMP_SUFFIX)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        return tmp


@contextmanager
def atomic_path(path, mode=None, what="the file"):
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    The temporary file lives in the same directory so that ``os.replace`` is an atomic
    rename on the same file system; on any error it is removed and ``path`` is untouched
    (``path`` itself is never opened, so it is never left truncated).  The temporary is
    named ``.NAME.<pid>.<random>.tmp``: on entry, those of earlier writers of ``path``
    whose process is gone (killed before they could clean up) are removed, while a live
    process's temporary is left alone.

    Parameters
    ----------
    path : str or os.PathLike
        The final file name.
    mode : int, optional
        The permission bits of the renamed file.  Default ``0o666 & ~umask``, as a file
        made by ``open`` would get.  The temporary file is private (0600) until it is
        renamed, so ``mode=0o600`` (checkpoints) is private at every moment.
    what : str, default "the file"
        How an error message names the file (``"the model"``, ...).

    Yields
    ------
    str
        A fresh, empty file name to write to.

    Raises
    ------
    OutputError
        The directory of ``path`` does not exist (``errno`` ENOENT).
    """
    path = os.fspath(path)
    directory = _output_directory(path, what)
    _check_not_special(path, what)
    remove_stale_temps(path)
    tmp = _make_temp(path, directory)
    try:
        yield tmp
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        # BaseException: a Ctrl-C in the middle of a long write must not leave the file.
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


class OutputError(OSError):
    """An output could not be written (full disk, read-only file system, a directory in
    the way, ...).  The message names the output (``cannot write the model 'm.h5': No
    space left on device``), never a temporary file; ``errno`` is the system's."""


def output_error(what, path, exc):
    """An ``OutputError`` for ``exc`` (an OSError) raised while writing ``what path``."""
    if isinstance(exc, OutputError):
        return exc
    reason = getattr(exc, "strerror", None) or str(exc)
    error = OutputError(f"cannot write {what} {os.fspath(path)!r}: {reason}")
    error.errno = getattr(exc, "errno", None)
    return error


def same_file(a, b):
    """Whether paths ``a`` and ``b`` name one file (or would, once written): the same
    inode when both exist (hard links, symbolic links, ``dir/../x``), else the same path
    once every symbolic link in it is resolved."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


def file_kind(path):
    """What ``path`` is when it is not a regular file: "a named pipe (FIFO)", "a character
    device", ...; None for a regular file (or a link to one) and for a path that does
    not exist.  Opening a FIFO waits for a writer (or a reader) for ever, and renaming a
    file over a device replaces the device: fastvi neither reads nor writes such paths
    as files."""
    import stat
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    for test, kind in ((stat.S_ISREG, None), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _check_not_special(path, what):
    """An OutputError if an output path is something other than a regular file."""
    kind = file_kind(path)
    if kind is not None:
        detail = "it is a directory" if kind == "a directory" else (
            f"it is {kind}, not a regular file")
        raise OutputError(f"cannot write {what} {os.fspath(path)!r}: {detail}")


def _output_directory(path, what):
    """The directory of ``path``, which must exist (an OutputError says so otherwise)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        error = OutputError(f"cannot write {what} {os.fspath(path)!r}: directory "
                            f"{directory!r} does not exist")
        error.errno = errno.ENOENT
        raise error
    return directory


def check_writable(path, what):
    """Fail now, not after hours of work, if ``path`` cannot be written atomically.

    Creates and removes a temporary file in the directory of ``path`` (as ``atomic_path``
    will), so a read-only file system, a directory without write permission, a missing
    directory or a directory at ``path`` are all found before the work starts.

    Parameters
    ----------
    path : str or os.PathLike
        The output file.
    what : str
        How messages name it (``"the model"``, ``"the predict output"``, ...).

    Raises
    ------
    OutputError
        With a message naming ``what`` and ``path`` and what is wrong.
    """
    path = os.fspath(path)
    directory = _output_directory(path, what)
    _check_not_special(path, what)
    try:
        os.remove(_make_temp(path, directory))
    except OSError as exc:
        raise output_error(what, path, exc) from None


class _WriteGuard(io.RawIOBase):
    """The file object an HDF5 file is written through (h5py's ``fileobj`` driver).

    HDF5 2.0 cannot recover from a write that fails while it closes a file: the close
    fails, the file stays half-closed, and the next attempt to close it (h5py's
    ``ObjectID.__dealloc__`` at garbage collection, or the library's shutdown) crashes the
    interpreter with a segmentation fault.  So the first failed write is kept in
    ``error``; while ``strict`` it is raised (the writing code stops at once), and every
    later write is discarded as if it had succeeded, so that closing always succeeds and
    the temporary file can be removed.
    """

    def __init__(self, path):
        super().__init__()
        self._file = open(path, "r+b", buffering=0)
        self.error = None
        self.strict = True

    def readable(self):
        return True

    def writable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=os.SEEK_SET):
        return self._file.seek(offset, whence)

    def tell(self):
        return self._file.tell()

    def readinto(self, buffer):
        return self._file.readinto(buffer)

    def write(self, data):
        if self.error is None:
            try:
                return self._file.write(data)
            except OSError as exc:
                self.error = exc
        if self.strict:
            raise OSError(self.error.errno, self.error.strerror)
        return len(data)

    def truncate(self, size=None):
        if self.error is None:
            try:
                return self._file.truncate(size)
            except OSError as exc:
                self.error = exc
        return size

    def sync(self):
        """fsync: the file is on disk before it is renamed into place."""
        if self.error is None:
            try:
                os.fsync(self._file.fileno())
            except OSError as exc:
                self.error = exc

    def close(self):
        super().close()
        self._file.close()


@contextmanager
def atomic_h5(path, what, mode=None, **kwargs):
    """Write an HDF5 file atomically: yield it open for writing, rename it into place.

    ``atomic_path`` for an HDF5 file, safe on a full disk: a failed write (no space left,
    a file size limit, an I/O error) ends in one ``OutputError`` naming ``what`` and
    ``path``, the temporary file is closed and removed, and ``path`` is untouched.  Errors
    of the block itself (a bad input chunk, Ctrl-C) propagate unchanged.

    Parameters
    ----------
    path : str or os.PathLike
        The final file name.
    what : str
        How error messages name the file (``"the model"``, ``"the checkpoint"``).
    mode : int, optional
        Permission bits of the file, as ``atomic_path`` (default ``0o666 & ~umask``).
    **kwargs
        More arguments of ``h5py.File`` (``libver``, ...).

    Yields
    ------
    h5py.File
        Open in mode ``"w"``; it is closed when the block ends.

    Raises
    ------
    OutputError
        The file could not be written.
    """
    block_error = None
    try:
        with atomic_path(path, mode, what) as tmp:
            guard = _WriteGuard(tmp)
            try:
                h5 = h5py.File(guard, "w", **kwargs)
            except BaseException:
                guard.close()
                raise
            try:
                yield h5
            except BaseException as exc:
                block_error = exc
                raise
            finally:
                _close(h5, guard, what, path, synced=block_error is None)
    except OSError as exc:
        # The block's own errors (a bad input chunk) are not the output's.
        if exc is block_error or isinstance(exc, OutputError):
            raise
        # Making, renaming or setting the mode of the file failed.
        raise output_error(what, path, exc) from None


def _close(h5, guard, what, path, synced):
    """Close an HDF5 file written through ``guard``; an OutputError if a write failed.

    From here every failed write is discarded, so the close itself always succeeds (see
    ``_WriteGuard``).  A completed file is fsynced before ``atomic_path`` renames it; a
    failed write is reported even when the block raised too: the full disk is the cause.
    """
    guard.strict = False
    with held():
        # A signal's KeyboardInterrupt raised inside the guard's write (a callback from
        # HDF5) would fail the close, which HDF5 cannot recover from: it waits until the
        # file is closed (fastvi.data.interrupts).
        h5.close()              # flushes the metadata and the cached chunks
    if synced:
        guard.sync()
    guard.close()
    if guard.error is not None:
        raise output_error(what, path, guard.error) from None
