"""The layers the README's Layout lists, read from the source: no module imports a higher layer (not even
lazily, inside a function), the core never imports Lightning, and module-level imports form no cycle."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# lowest first; a module may import its own layer and the ones before it
LAYERS = [
    ("core", lambda m: m.startswith("plantnseek.core.") or m == "plantnseek.core"),
    ("engine", lambda m: m.startswith("plantnseek.engine.") or m == "plantnseek.engine"),
    ("lightning", lambda m: m in ("plantnseek.module", "plantnseek.data", "plantnseek.engine_choice")),
    ("callbacks", lambda m: m.startswith("plantnseek.callbacks")),
    ("assembly", lambda m: m in ("plantnseek.trainer", "plantnseek.memory")),
    ("sweep", lambda m: m.startswith("plantnseek.sweep")),
    ("cli", lambda m: m.startswith("plantnseek.cli")),
    ("api", lambda m: m in ("plantnseek.api", "plantnseek")),
]


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in (ROOT / "plantnseek").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in (ROOT / "callbacks").glob("*.py"):
        found["plantnseek.callbacks" + ("" if path.stem == "__init__" else f".{path.stem}")] = path
    return found


def layer(name: str) -> int:
    ranks = [i for i, (_, test) in enumerate(LAYERS) if test(name)]
    assert ranks, f"{name} is in no layer of the README's Layout"
    return ranks[0]


def imports(path: pathlib.Path, known: dict, top_level_only: bool = False) -> set[str]:
    """The plantnseek modules (and third-party top-level packages) ``path`` imports."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:  # "from plantnseek.sweep import spec" imports the module plantnseek.sweep.spec
                full = f"{node.module}.{a.name}"
                out.add(full if full in known else node.module)
    return out


def test_every_module_sits_in_a_layer_and_imports_nothing_above_it():
    known = modules()
    wrong = []
    for name, path in known.items():
        for target in imports(path, known):
            if target in known and layer(target) > layer(name):
                wrong.append(f"{name} ({LAYERS[layer(name)][0]}) imports {target} ({LAYERS[layer(target)][0]})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("prefix", ["plantnseek.core", "plantnseek.engine"])
def test_the_core_never_imports_lightning(prefix):
    known = modules()
    for name, path in known.items():
        if name == prefix or name.startswith(prefix + "."):
            lightning = {t for t in imports(path, known) if t.split(".")[0] in ("pytorch_lightning", "lightning",
                                                                               "lightning_fabric")}
            assert not lightning, f"{name} imports {lightning}"


def test_module_level_imports_form_no_cycle():
    known = modules()
    graph = {n: {t for t in imports(p, known, top_level_only=True) if t in known and t != n} for n, p in known.items()}
    # a package's __init__ is imported before its submodules: an edge from a submodule to its own package
    # is the normal parent import, not a cycle
    graph = {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in graph.items()}
    state: dict[str, int] = {}

    def visit(n, trail):
        state[n] = 1
        for t in sorted(graph[n]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(t):] + [t]))
            if t not in state:
                visit(t, trail + [t])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
