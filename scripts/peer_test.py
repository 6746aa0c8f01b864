"""Run PaDiff's own test files against ``padiff_graph.compat``: the drop-in promise, judged by PaDiff's tests.

Usage::

    python scripts/peer_test.py /path/to/PaDiff [--timeout 600] [test_x.py ...]

Each ``tests/test_*.py`` of the PaDiff checkout is copied, unmodified, into a
scratch directory of its own beside a two-line ``padiff`` package that
re-exports :mod:`padiff_graph.compat.padiff`, and run there by ``python -m
pytest`` in its own process, with this repository on ``PYTHONPATH``. One line
per file, then ``passed P of N test files``; the exit status is 0 when every
file passed. Nothing is written into the PaDiff checkout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: the whole ``padiff`` package a test file imports: PaDiff's names, and its submodules from the compat shim
SHIM = (
    "from padiff_graph.compat.padiff import *  # noqa: F403\n"
    "from padiff_graph.compat.padiff import __path__  # noqa: F401  padiff.checker, padiff.dump_tools, ...\n"
)
#: lines of a failing file's pytest output shown under its result line
TAIL = 15


def run_file(test_file: Path, timeout: float) -> tuple[bool, str, float]:
    """Run one PaDiff test file in a scratch directory: (passed, pytest's last lines, seconds)."""
    with tempfile.TemporaryDirectory(prefix=f"peer-{test_file.stem}-") as scratch:
        package = Path(scratch) / "padiff"
        package.mkdir()
        (package / "__init__.py").write_text(SHIM)
        shutil.copyfile(test_file, Path(scratch) / test_file.name)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [scratch, str(REPO), env.get("PYTHONPATH")]))
        env.pop("PADIFF_API_CHECK", None)  # a test file turns it on itself when it wants it
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file.name]
        started = time.monotonic()
        try:
            done = subprocess.run(
                command, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout:g} s", time.monotonic() - started
        seconds = time.monotonic() - started
        output = (done.stdout + done.stderr).strip().splitlines()
        return done.returncode == 0, "\n".join(output[-TAIL:]), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("padiff", type=Path, help="a PaDiff checkout (the folder holding tests/)")
    parser.add_argument("files", nargs="*", help="only these test files (names in tests/)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test file (default 600)")
    args = parser.parse_args(argv)
    tests = sorted((args.padiff / "tests").glob("test_*.py"))
    if args.files:
        tests = [path for path in tests if path.name in set(args.files)]
    if not tests:
        parser.error(f"no test files in {args.padiff / 'tests'}")
    passed = 0
    for test_file in tests:
        ok, tail, seconds = run_file(test_file, args.timeout)
        passed += ok
        print(f"{'PASS' if ok else 'FAIL'}  {test_file.name}  ({seconds:.0f} s)", flush=True)
        if not ok:
            print("    " + tail.replace("\n", "\n    "), flush=True)
    print(f"passed {passed} of {len(tests)} test files")
    return 0 if passed == len(tests) else 1


if __name__ == "__main__":
    sys.exit(main())
