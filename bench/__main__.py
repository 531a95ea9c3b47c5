"""Run every benchmark module in this package: ``admin`` first, then the rest by name.

``python -m bench`` runs them all; ``python -m bench admin`` runs the named ones. Extra
arguments after ``--`` go to each module's ``main``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

FIRST = ("admin",)


def modules() -> list[str]:
    found = sorted(
        info.name
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not info.name.startswith("_")
    )
    return [name for name in FIRST if name in found] + [n for n in found if n not in FIRST]


def main(argv: list[str]) -> int:
    names, extra = argv, []
    if "--" in argv:
        cut = argv.index("--")
        names, extra = argv[:cut], argv[cut + 1 :]
    chosen = names or modules()
    unknown = [name for name in chosen if name not in modules()]
    if unknown:
        print(f"no benchmark called {', '.join(unknown)}; there are: {', '.join(modules())}")
        return 2
    status = 0
    for name in chosen:
        print(f"== bench.{name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        status = max(status, int(module.main(extra) or 0))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
