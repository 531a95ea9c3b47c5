"""`make lint`: the import contract of app/ (ARCHITECTURE.md, "The rules the lint
enforces"). Every import counts, at the top of a module or inside a function.

The modules fall into three layers:

* **interface**: what a request, a command or a worker enters by: the app factory
  (``app``), ``app.web``, ``app.cli``, and the modules that assemble the app for them
  (INTERFACE below);
* **core**: ``app.core``, the rules;
* **store**: every other module of app/ (models, database, migrations, the outbox and
  mail, sealing, keys, counters, caches): what the rules are kept in and sent with;
* **library internals**: ``app.internals`` alone, under them all: every use of a
  library's private names, which any layer may need (it names Flask's and SQLAlchemy's
  alike), importing nothing of app/.

The rules:

1. an import goes down or sideways, never up: interface -> core -> store -> library
   internals;
2. the core and the store import no web framework (Flask, its extensions, werkzeug);
3. no import cycle among the modules of app/.

Prints each breach and exits 1, or prints a one-line summary and exits 0.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: modules outside app.web and app.cli that belong to the interface layer
INTERFACE = {"app", "app.services", "app.config", "app.logs", "app.preflight", "app.worker"}
WEB_FRAMEWORK = ("flask", "flask_login", "flask_wtf", "htmx_flask", "werkzeug", "wtforms")
#: the module every layer may import, which imports nothing of app/ (app/internals.py)
INTERNALS = "app.internals"
RANK = {"internals": -1, "store": 0, "core": 1, "interface": 2}


def layer(module: str) -> str:
    if module == INTERNALS:
        return "internals"
    if module in INTERFACE or module.split(".")[:2] in (["app", "web"], ["app", "cli"]):
        return "interface"
    if module == "app.core" or module.startswith("app.core."):
        return "core"
    return "store"


def modules(package: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path, known: Iterable[str]) -> list[tuple[int, str]]:
    """(line, imported name) for each import in ``path``: modules of app/ resolved to the
    deepest module that exists, anything else as written."""
    known = set(known)
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            for alias in node.names:
                child = f"{name}.{alias.name}"
                found.append((node.lineno, child if child in known else name))
    resolved = []
    for line, name in found:
        target = name
        while target.startswith("app") and target not in known and "." in target:
            target = target.rpartition(".")[0]
        resolved.append((line, target if target in known else name))
    return resolved


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def breaches(package: Path) -> list[str]:
    known = modules(package)
    graph: dict[str, set[str]] = {name: set() for name in known}
    problems = []
    for module, path in known.items():
        where = path.relative_to(package.parent)
        for line, target in imports(module, path, known):
            if target in known:
                if target != module:
                    graph[module].add(target)
                if RANK[layer(target)] > RANK[layer(module)]:
                    problems.append(
                        f"{where}:{line}: {layer(module)} module {module} imports "
                        f"{layer(target)} module {target}"
                    )
            elif layer(module) in ("core", "store") and target.split(".")[0] in WEB_FRAMEWORK:
                problems.append(f"{where}:{line}: {layer(module)} module {module} imports {target}")
    for component in cycles(graph):
        problems.append(f"import cycle: {', '.join(component)}")
    return list(dict.fromkeys(problems))


def main(argv: list[str]) -> int:
    package = Path(argv[1]) if len(argv) > 1 else ROOT / "app"
    problems = breaches(package)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    count = len(modules(package))
    print(f"import contract: {count} modules, interface -> core -> store, no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
