"""Where the test and benchmark infrastructure lives (testkit/__init__.py): the tests and
the benchmarks share the ``testkit`` package, and nothing imports a test module, a
conftest.py or the ``tests`` package; the app imports none of them."""

from __future__ import annotations

import ast
from pathlib import Path

from testkit.cluster import ROOT


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in ``path``, those inside functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)]
            # ``from tests import test_api`` names the module in the imported names
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def breaches(files: list[Path], refused: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in files
        for line, module in imported_modules(path)
        if module in refused or module.startswith(tuple(f"{name}." for name in refused))
    ]


def is_test_module(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def test_nothing_imports_a_test_module_or_conftest():
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in python_files("tests", "testkit", "bench", "tools")
        for line, module in imported_modules(path)
        if is_test_module(module)
    ]
    assert found == []


def test_testkit_and_bench_import_nothing_from_tests():
    assert breaches(python_files("testkit", "bench"), ("tests",)) == []


def test_the_app_imports_none_of_the_tooling():
    assert breaches(python_files("app"), ("tests", "testkit", "bench")) == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from tests import conftest\n    import tests.test_api\n")
    assert [m for _line, m in imported_modules(module) if is_test_module(m)] == [
        "tests.conftest",
        "tests.test_api",
    ]
