"""Layering (docs/architecture.md), read from the source with `ast`: which package may import
which, that only `bootstrap.py` (the composition root) wires `gql`, `sync` and `models` together,
that the domain packages inside `models/` depend on each other in one direction, and that no
module is part of an import cycle.

Covers every module of the product: each top-level folder with an `__init__.py` (except
`tests/`) and each top-level `*.py` (`cli.py`, `settings.py`, ...). `tests/` and `bench/` are
harnesses that wire everything on purpose, like `bootstrap.py`, so they are not checked.

What counts as an import:
- For the layering rules: every `import` and `from ... import`, at module level, inside
  functions, and under `if TYPE_CHECKING:`: a type-only import is still knowledge of the other
  layer.
- For the cycle check: the imports that run, at module level and inside functions (a
  function-level import is the usual way to hide a cycle, so it counts). Imports under
  `if TYPE_CHECKING:` never execute and are left out; neither do `strawberry.lazy("...")`
  strings count, the documented way for Strawberry types to refer to each other.
- `import a.b.c` (or `from a.b import c`) also runs `a/__init__.py` and `a/b/__init__.py`, so a
  module depends on those packages too, except on its own enclosing packages (already running).

The analysis functions take a root folder, so the last tests prove the checks bite on a small
tree of forbidden imports built in tmp_path.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from settings import PROJECT_ROOT

NOT_PRODUCT = {"tests", "bench", "migrations"}
# The mock Stripe is a test double: the product never imports it. Both names are listed so the
# rule holds before and after it moves out of `sync/` (issue 10).
MOCK = ("stripe_mock", "sync.mock_stripe")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "models": ("gql", "sync", "strawberry", "celery", "stripe", *MOCK),
    "gql": ("celery", "sync", *MOCK),
    "sync": MOCK,
}
COMPOSITION_ROOT = "bootstrap"
WIRED_TOGETHER = frozenset({"gql", "sync", "models"})
# Inside models/: the shared modules know no domain package, and each domain package may use the
# ones before it in this order, never one after it (a credit note knows its invoice; an invoice
# knows nothing of usage or the close).
SHARED = (
    "models.tables",
    "models.money",
    "models.errors",
    "models.ids",
    "models.db",
    "models.text",
)
DOMAIN_ORDER = ("sync_state", "invoices", "payments", "usage", "close")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module: first-party ones resolved to a module or package
    line: int
    type_checking: bool  # under `if TYPE_CHECKING:`

    def where(self, root: Path, modules: dict[str, Path]) -> str:
        return f"{modules[self.source].relative_to(root)}:{self.line} imports {self.target}"


def discover(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every product module under root."""
    modules: dict[str, Path] = {}
    for path in sorted(root.glob("*.py")):
        modules[path.stem] = path
    for init in sorted(root.glob("*/__init__.py")):
        package = init.parent
        if package.name in NOT_PRODUCT or package.name.startswith("."):
            continue
        for path in sorted(package.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: dict[str, Path]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.type_checking = False
        self.found: list[Import] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            outer, self.type_checking = self.type_checking, True
            for child in node.body:
                self.visit(child)
            self.type_checking = outer
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        if base == "__future__":
            return
        for alias in node.names:
            # `from pkg import name`: name is a submodule, or an attribute of pkg.
            candidate = f"{base}.{alias.name}"
            self._add(candidate if candidate in self.known else base, node.lineno)

    def _add(self, target: str, line: int) -> None:
        self.found.append(Import(self.module, self._resolve(target), line, self.type_checking))

    def _resolve(self, target: str) -> str:
        """A first-party name to the longest prefix that is a module (`from models import
        tables` names models.tables; `import gql.app` names gql.app)."""
        parts = target.split(".")
        for n in range(len(parts), 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in self.known:
                return prefix
        return target


def collect(modules: dict[str, Path]) -> list[Import]:
    found: list[Import] = []
    for name, path in modules.items():
        collector = _Collector(name, path.name == "__init__.py", modules)
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        found.extend(collector.found)
    return found


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def forbidden_imports(imports: list[Import]) -> list[Import]:
    """Imports that break FORBIDDEN (a module of the mock may import the mock)."""
    return [
        i
        for i in imports
        if (banned := FORBIDDEN.get(i.source.split(".")[0]))
        and _under(i.target, banned)
        and not _under(i.source, MOCK)
    ]


def wiring_modules(imports: list[Import]) -> list[str]:
    """Modules other than the composition root that import gql, sync and models all three."""
    packages: dict[str, set[str]] = {}
    for i in imports:
        packages.setdefault(i.source, set()).add(i.target.split(".")[0])
    return sorted(
        m for m, used in packages.items() if m != COMPOSITION_ROOT and used >= WIRED_TOGETHER
    )


def runtime_graph(imports: list[Import], modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """source -> {first-party target: line} for the imports that execute."""
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for i in imports:
        if i.type_checking or i.target not in modules:
            continue
        parts = i.target.split(".")
        targets = [".".join(parts[:n]) for n in range(1, len(parts) + 1)]
        for t in targets:
            enclosing = i.source == t or i.source.startswith(t + ".")
            if t == i.target or (t in modules and not enclosing):
                graph[i.source].setdefault(t, i.line)
    return graph


def tangles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with a cycle (Tarjan): sets of modules that each
    import, through the others, themselves. Sorted, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(components)


def shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    return paths[v]
                if w in members and w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{component} is not a cycle")


def describe(component: list[str], graph: dict[str, dict[str, int]]) -> str:
    """The component's modules, and its shortest cycle with the line of each import."""
    cycle = shortest_cycle(graph, component)
    hops = zip(cycle, [*cycle[1:], cycle[0]], strict=True)
    path = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in hops) + f" -> {cycle[0]}"
    return f"{len(component)} modules {component}, for example {path}"


@cache
def _product() -> tuple[dict[str, Path], list[Import]]:
    modules = discover(PROJECT_ROOT)
    return modules, collect(modules)


def test_the_product_is_found() -> None:
    modules, imports = _product()
    assert {"cli", "settings", "models.invoices.lifecycle", "gql.app", "sync.tasks"} <= set(modules)
    assert not any(m.startswith(("tests", "bench")) for m in modules)
    assert imports


def test_layers_import_only_downwards() -> None:
    modules, imports = _product()
    bad = [i.where(PROJECT_ROOT, modules) for i in forbidden_imports(imports)]
    assert bad == [], "forbidden imports (docs/architecture.md):\n" + "\n".join(bad)


def domain_violations(imports: list[Import]) -> list[Import]:
    """Imports inside models/ against SHARED and DOMAIN_ORDER."""

    def package(module: str) -> str | None:
        parts = module.split(".")
        return (
            parts[1]
            if len(parts) > 2 and parts[0] == "models" and parts[1] in DOMAIN_ORDER
            else None
        )

    bad = []
    for i in imports:
        if not (i.source.startswith("models.") and i.target.startswith("models.")):
            continue
        target = package(i.target)
        if target is None:
            continue
        if i.source in SHARED:
            bad.append(i)
            continue
        source = package(i.source)
        if source is not None and DOMAIN_ORDER.index(target) > DOMAIN_ORDER.index(source):
            bad.append(i)
    return bad


def test_domain_packages_depend_in_one_direction() -> None:
    modules, imports = _product()
    assert {"models.invoices.lifecycle", "models.usage.ingest", "models.close.driver"} <= set(
        modules
    )
    bad = [i.where(PROJECT_ROOT, modules) for i in domain_violations(imports)]
    assert bad == [], "domain packages importing upwards:\n" + "\n".join(bad)


def test_an_upward_domain_import_is_found(tmp_path: Path) -> None:
    _, imports = _tree(
        tmp_path,
        {
            **{f"models/{p}/__init__.py": "" for p in DOMAIN_ORDER},
            "models/__init__.py": "",
            "models/money.py": "from models.invoices import lifecycle\n",
            "models/invoices/lifecycle.py": "from models.usage import ingest\n",
            "models/usage/ingest.py": "from models.invoices import lifecycle\n",
        },
    )
    found = sorted((i.source, i.target) for i in domain_violations(imports))
    assert found == [
        ("models.invoices.lifecycle", "models.usage.ingest"),
        ("models.money", "models.invoices.lifecycle"),
    ]


def test_only_bootstrap_wires_gql_sync_and_models_together() -> None:
    _, imports = _product()
    assert wiring_modules(imports) == []


def test_no_import_cycles() -> None:
    modules, imports = _product()
    graph = runtime_graph(imports, modules)
    found = [describe(c, graph) for c in tangles(graph)]
    assert found == [], "import cycles:\n" + "\n".join(found)


# --- the checks bite ----------------------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> tuple[dict[str, Path], list[Import]]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    modules = discover(root)
    return modules, collect(modules)


def test_forbidden_imports_are_found_wherever_they_hide(tmp_path: Path) -> None:
    modules, imports = _tree(
        tmp_path,
        {
            "models/__init__.py": "",
            "models/a.py": "import gql\nfrom celery import Celery\n",
            "models/b.py": "def f():\n    from sync import tasks\n",
            "models/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import stripe\n",
            "models/d.py": "from stripe_mock import app\n",
            "gql/__init__.py": "",
            "gql/x.py": "from sync.tasks import run\nimport models\n",
            "sync/__init__.py": "",
            "sync/tasks.py": "import stripe\n",
            "sync/mock_stripe/__init__.py": "from . import handlers\n",
            "sync/mock_stripe/handlers.py": "from sync.mock_stripe import errors\n",
            "sync/uses_mock.py": "from sync.mock_stripe import create_app\n",
            "ok.py": "import gql, models\n",
        },
    )
    found = {(i.source, i.target) for i in forbidden_imports(imports)}
    assert found == {
        ("models.a", "gql"),
        ("models.a", "celery"),
        ("models.b", "sync.tasks"),
        ("models.c", "stripe"),
        ("models.d", "stripe_mock"),
        ("gql.x", "sync.tasks"),
        ("sync.uses_mock", "sync.mock_stripe"),
    }
    assert modules


def test_a_module_wiring_all_three_is_found(tmp_path: Path) -> None:
    _, imports = _tree(
        tmp_path,
        {
            "bootstrap.py": "import gql, sync, models\n",
            "runner.py": "import gql.app\ndef f():\n    from sync import tasks\nfrom models import t\n",
            "half.py": "import gql, models\n",
            **{f"{p}/__init__.py": "" for p in ("gql", "sync", "models")},
        },
    )
    assert wiring_modules(imports) == ["runner"]


def test_cycles_through_functions_and_packages_are_found(tmp_path: Path) -> None:
    modules, imports = _tree(
        tmp_path,
        {
            "gql/__init__.py": "",
            "gql/types.py": "from gql.queries import q\n",
            "gql/queries.py": "def q():\n    from gql import filters\n",
            "gql/filters.py": "import gql.types\n",
            # Type-only imports never run: no cycle.
            "gql/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gql import b\n",
            "gql/b.py": "from gql import a\n",
            # A package __init__ importing a module that imports the package from outside.
            "sync/__init__.py": "from sync import tasks\n",
            "sync/tasks.py": "import models.x\n",
            "models/__init__.py": "",
            "models/x.py": "from sync import anything\n",
            # A module importing its own package's __init__ (already running) is no cycle.
            "demo/__init__.py": "from demo import seed\n",
            "demo/seed.py": "from demo import helpers\n",
            "demo/helpers.py": "",
        },
    )
    graph = runtime_graph(imports, modules)
    assert tangles(graph) == [
        ["gql.filters", "gql.queries", "gql.types"],
        ["models.x", "sync", "sync.tasks"],
    ]
    assert shortest_cycle(graph, tangles(graph)[0]) == ["gql.filters", "gql.types", "gql.queries"]
    assert describe(tangles(graph)[0], graph).endswith(
        "gql.filters (line 1) -> gql.types (line 1) -> gql.queries (line 2) -> gql.filters"
    )
