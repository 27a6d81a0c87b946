"""The package's layers: every import points down, no import circle, no import-time effects.

(__main__ ->) cli -> report | search | scaffold | export | serve -> experiment -> tasks -> engine ->
config | utils -> errors (and the package root, which holds the version). Each module
belongs to exactly one layer, named by its first package; a module may import its own
package and any lower layer, never a higher one nor a sibling of its own layer.
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "torchstarter"
LAYERS = [  # lowest first
    {"errors", ""},  # "": the package root (__init__.py: the version)
    {"config", "utils"},
    {"engine"},
    {"tasks"},
    {"experiment"},
    {"report", "search", "scaffold", "export", "serve"},
    {"cli"},
    {"__main__"},  # `python -m torchstarter`: the CLI's entry point
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> list[tuple[int, str]]:
    """(line, module) for every torchstarter module that `name` imports, anywhere in it."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if is_package(path) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import module` imports pkg.module
                target = f"{base}.{alias.name}"
                found.append((node.lineno, target if target in MODULES else base))
    return [(line, target) for line, target in found
            if target == "torchstarter" or target.startswith("torchstarter.")]


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_belongs_to_a_layer():
    assert {layer_of(name) for name in MODULES} <= set(RANK)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_only_point_down(name):
    own = layer_of(name)
    upward = [f"line {line}: {target} ({layer_of(target) or 'root'})"
              for line, target in imports_of(name)
              if layer_of(target) != own and RANK[layer_of(target)] >= RANK[own]]
    assert not upward, f"{name} ({own}) imports a layer that is not below it: {upward}"


def test_no_import_circle():
    graph = {name: {t for _, t in imports_of(name) if t != name} for name in MODULES}
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circle = path[path.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)


# Calls that change the whole process, and may not run when a module is imported.
PROCESS_WIDE = {"os.umask", "os.chdir", "sys.path.append", "sys.path.insert",
                "sys.path.extend", "logging.basicConfig", "signal.signal",
                "torch.set_num_threads", "torch.manual_seed", "warnings.filterwarnings",
                "warnings.simplefilter", "os.environ.update", "os.environ.setdefault"}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def import_time_nodes(tree: ast.Module) -> list[ast.AST]:
    """What runs on import: the module body outside functions, classes bodies included
    (they run too), `if __name__ == "__main__"` blocks excluded."""
    out: list[ast.AST] = []
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            continue
        out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


@pytest.mark.parametrize("name", sorted(MODULES))
def test_importing_a_module_changes_nothing_in_the_process(name):
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    effects = []
    for node in import_time_nodes(tree):
        if isinstance(node, ast.Call) and dotted(node.func) in PROCESS_WIDE:
            effects.append(f"line {node.lineno}: {dotted(node.func)}()")
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                text = dotted(target)
                if text.endswith(".propagate") or text.startswith(("sys.", "os.environ")):
                    effects.append(f"line {node.lineno}: {text} =")
    assert not effects, f"{name} changes the process when imported: {effects}"


def test_no_module_reads_or_sets_the_umask():
    """Reading it means setting it (os.umask), which races with every other thread."""
    users = [name for name, path in MODULES.items()
             if "umask(" in path.read_text(encoding="utf-8")]
    assert users == []


def test_the_checks_see_what_they_look_for():
    """The walkers above find the imports and effects they are meant to refuse."""
    assert "torchstarter.engine.trainer" in {t for _, t in imports_of("torchstarter.engine.build")}
    assert any(t == "torchstarter.tasks.signs.net" for _, t in
               imports_of("torchstarter.tasks.signs"))  # relative and `from pkg import mod`
    assert any(t == "torchstarter.cli.main" for _, t in imports_of("torchstarter.__main__"))
    bad = ast.parse("import os\nos.umask(0)\ndef f():\n    os.umask(0)\n")
    calls = [n for n in import_time_nodes(bad) if isinstance(n, ast.Call)]
    assert [dotted(c.func) for c in calls] == ["os.umask"]
