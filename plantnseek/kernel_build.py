"""Building and loading the native training kernel (``kernel.c``); :mod:`plantnseek.kernel` uses it.

It is compiled on first use with the system's C compiler (``$CC`` or ``cc``) into
``$PLANTNSEEK_CACHE`` (default ``~/.cache/plantnseek``; if that cannot be written, a private folder of
this user's under the temporary directory), named by a hash of source, flags and CPU, and written
atomically (temporary file, then rename), so parallel workers may build it at the same time.
``PLANTNSEEK_KERNEL`` chooses: ``auto`` (default; native when it builds, else PyTorch with one
warning), ``native`` (an error if it cannot be built) or ``torch``.
"""
from __future__ import annotations

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

from plantnseek.errors import UsageError

SOURCE = Path(__file__).resolve().with_name("kernel.c")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-std=gnu11", "-fPIC", "-shared")
MODES = ("auto", "native", "torch")
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
    """Refuse a bad ``PLANTNSEEK_KERNEL``, and in mode ``native`` a kernel that cannot be built."""
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


class CompileError(OSError):
    """The compiler is missing or failed (another folder would not help)."""


def _build(path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".kernel-", suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        cmd = [os.environ.get("CC", "cc"), *FLAGS, "-o", tmp, str(SOURCE), "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as e:
            raise CompileError(f"{cmd[0]}: {e}") from e
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            errors = [line.strip() for line in lines if "error" in line.lower()]
            raise CompileError(f"{cmd[0]} failed: {(errors or lines or [f'exit {done.returncode}'])[0]}")
        os.replace(tmp, path)  # atomic: a parallel builder or reader sees no library or a whole one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _in_folder(folder: Path, shared: bool) -> Path:
    """The library in ``folder``, built there if missing. In the shared temporary directory only a folder
    this user owns and nobody else can write is used: another user could plant a library there."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if shared:
        st = folder.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise OSError(f"{folder} is not a private folder of this user")
    path = library_path(folder)
    if not path.exists():
        _build(path)
    return path


def _find_or_build() -> Path:
    preferred, fallback = cache_dirs()
    try:
        return _in_folder(preferred, shared=False)
    except CompileError:
        raise  # another folder would not help
    except OSError:  # the folder cannot be made or written
        return _in_folder(fallback, shared=True)


def load() -> ctypes.CDLL | None:
    """The kernel library (built if needed), or None in mode ``torch`` or when it cannot be built."""
    global _library, _failure
    if mode() == "torch":
        return None
    with _lock:
        if _library is None and _failure is None:
            try:
                lib = ctypes.CDLL(str(_find_or_build()))
                for name in ("pns_train_f32", "pns_train_f64"):
                    getattr(lib, name).restype = ctypes.c_int
                _library = lib
            except OSError as e:  # CompileError included
                _failure = str(e) or type(e).__name__
                if mode() == "auto":
                    print(f"plantnseek: the native training kernel could not be built ({_failure}); training uses "
                          "the PyTorch path (same mathematics, slower). PLANTNSEEK_KERNEL=torch silences this.",
                          file=sys.stderr)
    if _library is None and mode() == "native":
        raise UsageError(f"PLANTNSEEK_KERNEL=native but the training kernel could not be built: {_failure}")
    return _library
