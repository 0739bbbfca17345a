"""Run ``python -m MODULE ARGS...`` in this process and, when it exits, write the names of the modules
it had loaded to $MODULE_CENSUS_OUT, one a line: what a real service process imported, for tests
of what each service loads at idle (tests/integration/test_idle_imports.py).

    ServiceProcess("web", path, prefix=[PYTHON, MODULES_AT_EXIT], env={"MODULE_CENSUS_OUT": out})
"""
from __future__ import annotations

import atexit
import os
import runpy
import sys
from pathlib import Path


def _write(path: Path) -> None:
    path.write_text("\n".join(sorted(sys.modules)) + "\n")


def main() -> None:
    # argv: [this script, python, "-m", module, args...], as ServiceProcess builds it behind a prefix
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        raise SystemExit("usage: modules_at_exit.py PYTHON -m MODULE [ARGS...]")
    module = sys.argv[3]
    atexit.register(_write, Path(os.environ["MODULE_CENSUS_OUT"]))
    sys.argv = [module, *sys.argv[4:]]
    sys.path[0] = os.getcwd()  # as `python -m` has it, not this script's directory
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
