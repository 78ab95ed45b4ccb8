"""Building, checking and loading the native training kernel (``kernel.c``); :mod:`plantnseek.engine.kernel` uses it.

It is compiled on first use with the system's C compiler (``$CC`` or ``cc``) into
``$PLANTNSEEK_CACHE`` (default ``~/.cache/plantnseek``; if that cannot be written, a private folder of
this user's under the temporary directory), named by a hash of source, flags and CPU, and written
atomically (temporary file, then rename), so parallel workers may build it at the same time.

Loading a shared library runs its code, and a damaged one crashes the process (a truncated file is a
``Bus error``), so nothing is loaded unchecked: the folder and the library must be this user's and
writable by no one else (a refused folder is reported, not worked around), and the library must match
the SHA-256 digest recorded next to it (``kernel-<hash>.so.sha256``, written after the library) when it
was built. A library that does not (empty, truncated, garbage, another file copied over it, no digest)
is rebuilt once. ``PLANTNSEEK_KERNEL`` chooses: ``auto`` (default; native when it loads, else PyTorch
with one line saying why), ``native`` (an error if it cannot be loaded) or ``torch``.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from plantnseek.core.errors import UsageError

SOURCE = Path(__file__).resolve().with_name("kernel.c")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-std=gnu11", "-fPIC", "-shared")
MODES = ("auto", "native", "torch")
HEAD = 256  # bytes of the library whose digest is recorded on their own (a truncated file keeps them)
CPU_FIELDS = ("flags", "model name", "vendor_id", "Features", "CPU implementer", "CPU part", "CPU architecture")
_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failure: str | None = None


def mode() -> str:
    value = os.environ.get("PLANTNSEEK_KERNEL", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise UsageError(f"PLANTNSEEK_KERNEL={value!r} is invalid; allowed: {', '.join(MODES)}")
    return value


def check_setting() -> None:
    """Refuse a bad ``PLANTNSEEK_KERNEL``, and in mode ``native`` a kernel that cannot be loaded."""
    if mode() == "native":
        load()


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: a library built for one CPU may not run on another."""
    text = ""
    try:
        with open("/proc/cpuinfo") as f:
            text = "".join(sorted({line for line in f if line.startswith(CPU_FIELDS)}))
    except OSError:
        pass
    return platform.machine() + text


def cache_dirs() -> list[Path]:
    """Where the built library is kept: ``$PLANTNSEEK_CACHE`` or ``~/.cache/plantnseek``; only if that
    cannot be used, a private folder of this user's under the temporary directory."""
    preferred = Path(os.environ.get("PLANTNSEEK_CACHE") or Path.home() / ".cache" / "plantnseek")
    return [preferred, Path(tempfile.gettempdir()) / f"plantnseek-{os.getuid()}"]


def library_path(cache: Path | None = None) -> Path:
    cc = os.environ.get("CC", "cc")
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join((cc, *FLAGS, _cpu_signature())).encode()).hexdigest()[:16]
    return (cache or cache_dirs()[0]) / f"kernel-{key}.so"


def digest_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


class CompileError(OSError):
    """The compiler is missing or failed (another folder would not help)."""


class Unusable(OSError):
    """The kernel must not or cannot be loaded, and another folder would not help; the message says why."""


def untrusted(st: os.stat_result, folder: bool) -> str | None:
    """Why a folder or library (by its ``lstat``) could hold code someone else wrote, or None: it must be
    a real folder or file (not a link), this user's, and writable by no one else."""
    if not (stat.S_ISDIR if folder else stat.S_ISREG)(st.st_mode):
        return f"is not a {'folder' if folder else 'regular file'} (a link?)"
    if st.st_uid != os.getuid():
        return f"belongs to uid {st.st_uid}, not to this user (uid {os.getuid()})"
    writers = [who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if st.st_mode & bit]
    if writers:
        return f"is writable by {' and '.join(writers)} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[str]:
    """A temporary file next to ``path`` that replaces it when the block succeeds: a parallel builder or
    reader sees the old file or a whole new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _build(path: Path) -> None:
    """Compile into ``path``, then record its digest, after the library is in place: a reader that sees
    the new library before its digest rebuilds it rather than load it unchecked."""
    with _replacing(path) as tmp:
        cmd = [os.environ.get("CC", "cc"), *FLAGS, "-o", tmp, str(SOURCE), "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as e:
            raise CompileError(f"{cmd[0]}: {e}") from e
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            errors = [line.strip() for line in lines if "error" in line.lower()]
            raise CompileError(f"{cmd[0]} failed: {(errors or lines or [f'exit {done.returncode}'])[0]}")
        os.chmod(tmp, 0o755)  # whatever the umask: never writable by others
        data = Path(tmp).read_bytes()
    with _replacing(digest_path(path)) as tmp:
        Path(tmp).write_text(f"{_sha(data)} {len(data)} {_sha(data[:HEAD])}\n")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def damage(path: Path) -> str | None:
    """What is wrong with an existing library, or None if it is this user's, private and exactly the file
    built there (its recorded digest): read before the loader ever maps it. The recorded size and digest
    of its first bytes tell a truncated library from garbage or another file copied over it."""
    problem = untrusted(path.lstat(), folder=False)
    if problem:
        return problem
    data = path.read_bytes()
    if not data:
        return "is empty"
    try:
        digest, size_text, head = digest_path(path).read_text().split()
        size = int(size_text)
    except (OSError, ValueError):
        return "has no valid recorded digest (an older build, or one cut short)"
    if _sha(data[:HEAD]) != head:
        return f"is not the library built there ({len(data)} bytes of garbage or another file copied over it)"
    if len(data) < size:
        return f"is truncated ({len(data)} of {size} bytes)"
    if len(data) != size:
        return f"has {len(data)} bytes, not the {size} built"
    if _sha(data) != digest:
        return "does not match its recorded digest (damaged)"
    return None


def _in_folder(folder: Path) -> Path:
    """The checked library in ``folder``, built there if missing or rebuilt once if damaged. Only a folder
    this user owns and nobody else can write is used: anyone who can write it could plant a library."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    problem = untrusted(folder.lstat(), folder=True)
    if problem:
        raise Unusable(f"the kernel folder {folder} is not a private folder of this user: it {problem}; "
                       f"make it private (chmod go-w) or set PLANTNSEEK_CACHE to another folder")
    path = library_path(folder)
    if not os.path.lexists(path):
        _build(path)
        return path
    wrong = damage(path)
    if wrong is not None:
        try:
            _build(path)
        except CompileError as e:  # not the compiler's fault alone: say what was wrong with the library
            raise Unusable(f"the cached kernel library {path} {wrong} and could not be rebuilt ({e})") from e
    return path


def _find_or_build() -> Path:
    preferred, fallback = cache_dirs()
    try:
        return _in_folder(preferred)
    except (CompileError, Unusable):
        raise  # another folder would not help, or the user should see that the folder is refused
    except OSError:  # the folder cannot be made or written
        return _in_folder(fallback)


def _open(path: Path) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise Unusable(f"the kernel library {path} could not be loaded ({e})") from e
    for name in ("pns_train_f32", "pns_train_f64"):
        getattr(lib, name).restype = ctypes.c_int
    return lib


def load() -> ctypes.CDLL | None:
    """The kernel library (built and checked if needed), or None in mode ``torch`` or when it cannot be
    used; mode ``auto`` then says why in one line, once."""
    global _library, _failure
    if mode() == "torch":
        return None
    with _lock:
        if _library is None and _failure is None:
            try:
                _library = _open(_find_or_build())
            except Unusable as e:
                _failure = str(e)
            except OSError as e:  # CompileError, or no folder could be made or written
                _failure = f"the training kernel could not be built ({str(e) or type(e).__name__})"
            if _failure is not None and mode() == "auto":
                print(f"plantnseek: {_failure}; training uses the PyTorch path (same mathematics, slower). "
                      "PLANTNSEEK_KERNEL=torch silences this.", file=sys.stderr)
    if _library is None and mode() == "native":
        raise UsageError(f"PLANTNSEEK_KERNEL=native but {_failure}")
    return _library



def failure() -> str | None:
    """Why the library could not be used (said once, by :func:`load`), or None."""
    return _failure
