"""The package's import graph, built from the source: no cycles, and the rooms keep their doors.

The graph is read with :mod:`ast` from every ``.py`` file of every package that ``setup.cfg`` maps in
``package_dir`` (``rlkit/`` as ``rlkit.*``, ``envs/`` as ``rlkit.envs.*``, ``agents/`` as ``rlkit.agents.*``,
and whatever else it maps), so a new module is in the graph the moment it exists; nothing here lists
today's modules.  Nothing is imported.

Every import statement counts, wherever it sits: at module level, inside a function or method, under
``if TYPE_CHECKING:``, inside ``try``.  A lazy import that dodges a cycle at run time is still a cycle
in the design (the two modules cannot be understood, tested or moved apart), so it fails here too.

Where an edge points (only imports of the package's own modules make edges):

- ``import a.b.c`` -> the module ``a.b.c`` (``a/b/c.py``, or ``a/b/c/__init__.py`` for a package).
  Python also runs ``a/__init__`` and ``a/b/__init__`` on the way, but those are not edges: a package
  ``__init__`` that imports its own submodules would otherwise make every submodule a cycle.
- ``from a.b import c`` -> ``a.b.c`` when ``c`` is a submodule (or subpackage) of ``a.b``; otherwise
  ``c`` is a name defined in ``a/b/__init__.py`` and the edge points at ``a.b`` (its ``__init__``).
  So ``agents/__init__.py`` importing ``agents/dqn.py`` and ``dqn.py`` doing
  ``from rlkit.agents import AGENTS`` is a cycle through ``__init__`` (it is one at run time too),
  while ``dqn.py`` doing ``from rlkit.agents import sac`` is only an edge to ``sac.py``.
- Relative imports are resolved against the importing module's package first (``from . import x``
  in ``a/b/m.py`` is ``from a.b import x``; in ``a/b/__init__.py`` it is the same).
- A dotted name that is not a module (``import a.b.attr`` style) points at its longest module prefix.

Rooms (docs/design: storage never imports orchestration; envs never import the run machinery; the
contract stands alone):

- ``rlkit.experience.*`` never imports ``rlkit.training.*``;
- ``rlkit.envs.*`` never imports ``rlkit.training.*`` or ``rlkit.runfiles.*``;
- ``rlkit.contract.*`` imports nothing of rlkit except ``rlkit.errors`` and ``rlkit.contract.*``.
"""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = "rlkit"


# --------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------


def package_dirs() -> dict[str, Path]:
    """``setup.cfg``'s ``package_dir``: import name -> source directory (only those under ``rlkit``)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    dirs = {}
    for line in cfg["options"]["package_dir"].strip().splitlines():
        name, _, folder = (part.strip() for part in line.partition("="))
        if name == TOP or name.startswith(TOP + "."):
            dirs[name] = ROOT / folder
    return dirs


def source_modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package found on disk: dotted name -> (file, is a package ``__init__``)."""
    modules: dict[str, tuple[Path, bool]] = {}
    # the most specific mapping first: a folder mapped to its own package (rlkit.envs -> envs/) wins
    for package, folder in sorted(package_dirs().items(), key=lambda item: -item[0].count(".")):
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if any(p == "__pycache__" or p.startswith(".") for p in parts):
                continue
            is_init = parts[-1] == "__init__"
            name = ".".join((package, *parts[:-1])) if is_init else ".".join((package, *parts))
            modules.setdefault(name, (path, is_init))
    return modules


def _known(name: str, modules: dict) -> str | None:
    """``name`` if it is a module, else its longest prefix that is one (None outside the package)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _absolute(node: ast.ImportFrom, module: str, is_init: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module if is_init else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str, path: Path, is_init: bool, modules: dict) -> dict[str, int]:
    """The package modules ``module`` imports (any depth in the file), each with the line of its first import."""
    edges: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [_known(alias.name, modules) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_init)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else _known(base, modules))
        for target in targets:
            if target is not None and target != module:
                edges.setdefault(target, node.lineno)
    return edges


def import_graph() -> dict[str, dict[str, int]]:
    modules = source_modules()
    return {name: imports_of(name, path, is_init, modules) for name, (path, is_init) in modules.items()}


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's components of size > 1 (iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def cycle_path(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    """The shortest cycle through the component's first module, as ``a (line 3) -> b (line 9) -> a``: each
    ``(line N)`` is where that module imports the next one."""
    members, start = set(component), component[0]
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node]):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                path.reverse()
                hops = [f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:] + [start])]
                return " -> ".join(hops + [start])
            if child in members and child not in previous and child != start:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start} in {component}")


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# --------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------


GRAPH = import_graph()


def test_the_graph_is_read_from_the_source():
    # the three mapped folders and the rooms are there, found on disk; imports inside functions count
    for name in ("rlkit", "rlkit.envs", "rlkit.agents", "rlkit.api", "rlkit.envs.wrappers"):
        assert name in GRAPH, name
    assert any(_in(m, "rlkit.agents") and m != "rlkit.agents" for m in GRAPH)
    assert "rlkit.api" in GRAPH["rlkit"]  # rlkit/__init__.py imports the API inside __getattr__


def test_edge_rules(tmp_path):
    # `from pkg import sub` points at the submodule, `from pkg import name` at pkg/__init__, relative resolved
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for rel, text in {"__init__.py": "from pkg import a\nNAME = 1\n",
                      "a.py": "def f():\n    from pkg import NAME\n",
                      "b.py": "from . import a\nimport pkg.sub.c\nfrom .sub.c import thing\n",
                      "sub/__init__.py": "from .. import b\n", "sub/c.py": "from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from ..b import x\n"}.items():
        (pkg / rel).write_text(text)
    modules = {"pkg": (pkg / "__init__.py", True), "pkg.a": (pkg / "a.py", False), "pkg.b": (pkg / "b.py", False),
               "pkg.sub": (pkg / "sub" / "__init__.py", True), "pkg.sub.c": (pkg / "sub" / "c.py", False)}
    graph = {name: set(imports_of(name, path, is_init, modules)) for name, (path, is_init) in modules.items()}
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg"}, "pkg.b": {"pkg.a", "pkg.sub.c"}, "pkg.sub": {"pkg.b"},
                     "pkg.sub.c": {"pkg.b"}}
    components = strongly_connected({k: dict.fromkeys(v, 1) for k, v in graph.items()})
    assert sorted(components) == [["pkg", "pkg.a"], ["pkg.b", "pkg.sub.c"]]


def test_no_import_cycles():
    cycles = [f"{cycle_path(GRAPH, component)}   [component: {', '.join(component)}]"
              for component in strongly_connected(GRAPH)]
    assert not cycles, "import cycles (each a path through its strongly connected component):\n  " + "\n  ".join(cycles)


ROOM_RULES = {
    # importer room: (forbidden rooms, allowed exceptions)
    "rlkit.experience": (("rlkit.training",), ()),
    "rlkit.envs": (("rlkit.training", "rlkit.runfiles"), ()),
    "rlkit.contract": (("rlkit",), ("rlkit.errors", "rlkit.contract")),
}


@pytest.mark.parametrize("room", sorted(ROOM_RULES))
def test_room_rules(room):
    forbidden, allowed = ROOM_RULES[room]
    broken = [f"{module} imports {target} (line {line})"
              for module, targets in sorted(GRAPH.items()) if _in(module, room)
              for target, line in sorted(targets.items())
              if any(_in(target, f) for f in forbidden) and not any(_in(target, a) for a in allowed)]
    assert not broken, f"{room} breaks its room's rule:\n  " + "\n  ".join(broken)
