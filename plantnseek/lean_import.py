"""Importing Lightning without torch's compiler stack: 1.7 s of every command that nothing uses.

The command line and sweep workers call :func:`lean_lightning_import` once, before anything imports
Lightning; a library import of plantnseek never does. ``tests/test_tuning.py`` checks that a whole run
never loads the real ``torch._dynamo``, that anything beyond the stand-in's idle names (or importing
a submodule, or compiling) loads it once, and the fallback.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning_fabric", "torchmetrics", "lightning_utilities")
COMPILER = "torch._dynamo"


class _Compiler(types.ModuleType):
    """Stands in for ``torch._dynamo`` until something needs more than its idle names.

    ``disable(fn)`` returns ``fn`` and ``graph_break()`` does nothing, as both do where nothing
    compiles; ``OptimizedModule`` (what ``torch.compile`` returns) matches nothing. Any other name loads
    the real module in the stand-in's place and answers from it, so compiling still works if asked
    for, and so does importing a submodule (``import torch._dynamo.config``: Python asks the stand-in
    for its ``__path__``); ``from torch._dynamo import x`` also asks, and is told it is not a package,
    so that ``x`` is looked up as a name: one of the idle names, or the real module's.
    """

    class OptimizedModule:
        pass

    def __init__(self) -> None:
        super().__init__(COMPILER, "stand-in for torch._dynamo until it is needed")

    @staticmethod
    def disable(fn: Any = None, recursive: bool = True, **kwargs: Any) -> Any:
        return fn if fn is not None else (lambda f: f)

    @staticmethod
    def graph_break(msg: str = "") -> None:  # torch's optimizers call it around every step
        return None

    def __getattr__(self, name: str) -> Any:
        if name == "__path__":
            caller = sys._getframe(1)
            if caller.f_code.co_name != "_find_and_load_unlocked":
                raise AttributeError(name)  # ``from torch._dynamo import x`` asks too: x is then a name
            real = _load_real_compiler(self)  # ``import torch._dynamo.<sub>``: the real package first
            _ALREADY_IMPORTED.name = caller.f_locals.get("name")
            return real.__path__
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_load_real_compiler(self), name)


class _AlreadyImported(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Ends the submodule import that made the stand-in give way with the module the real package made.

    Python asks a parent for ``__path__`` after checking ``sys.modules`` for the submodule; loading the
    real package then imports most submodules itself, and the import would run such a one a second
    time (two ``config`` modules: a setting made on one unseen by the compiler) without this finder.
    """

    name: str | None = None
    original: Any = None

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.name:
            return None
        self.name = None
        module = sys.modules.get(name)
        if module is None:
            return None  # not imported by the package: the usual finders load it
        self.original = module.__spec__
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec: Any) -> types.ModuleType:
        return sys.modules[spec.name]

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__spec__ is not self.original:  # the import system may have set ours: put the real one back
            module.__spec__ = self.original


_ALREADY_IMPORTED = _AlreadyImported()


def _load_real_compiler(stand_in: types.ModuleType) -> types.ModuleType:
    import torch

    if sys.modules.get(COMPILER) is stand_in:
        del sys.modules[COMPILER]
    if torch.__dict__.get("_dynamo") is stand_in:
        del torch._dynamo
    return importlib.import_module(COMPILER)


def lean_lightning_import(stand_in: types.ModuleType | None = None) -> bool:
    """Import pytorch_lightning without torch's compiler stack; True if it was imported that way.

    Importing ``torch._dynamo`` takes about 1.7 s, a quarter of a whole small run, and neither the
    commands nor Lightning use it: Lightning names ``OptimizedModule`` for isinstance checks and wraps
    methods in ``torch.compiler.disable``; torch's optimizers wrap theirs in a lazy disable and call
    ``graph_break()`` around each step. The commands never compile a model, so :class:`_Compiler`
    stands in for it for the whole process (anything beyond those names loads the real module). If
    Lightning fails to import with the stand-in (another version), what that left is dropped and it is
    imported as usual. Only the command line calls this, never a library import of plantnseek.
    """
    if "pytorch_lightning" in sys.modules or COMPILER in sys.modules:
        return False
    import torch  # noqa: F401 - before the stand-in: torch's own import must see the real world

    before = set(sys.modules)
    stand_in = stand_in if stand_in is not None else _Compiler()
    sys.modules[COMPILER] = stand_in
    if _ALREADY_IMPORTED not in sys.meta_path:
        sys.meta_path.insert(0, _ALREADY_IMPORTED)
    try:
        import pytorch_lightning  # noqa: F401
        return True
    except Exception:  # noqa: BLE001 - fall back to the usual import below
        for name in set(sys.modules) - before:
            if name == COMPILER or name.split(".")[0] in LIGHTNING_PACKAGES:
                del sys.modules[name]
        if torch.__dict__.get("_dynamo") is stand_in:
            del torch._dynamo
        import pytorch_lightning  # noqa: F401,F811
        return False
