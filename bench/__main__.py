"""``python -m bench``: run every benchmark module, print one table, write tests/artifacts/bench.md."""
from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
MODULES = ["decode", "ingest", "enrich", "store", "blocks", "e2e", "resources", "analyzer", "web", "history", "webhistory",
           "faults", "compose"]


class Report:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.skipped: list[tuple[str, str]] = []

    def __call__(self, section: str, name: str, value, unit: str = "", note: str = "") -> None:
        text = _fmt(value)
        self.rows.append((section, name, text, unit, note))
        print(f"  {section:10} {name:48} {text:>14} {unit:10} {note}", flush=True)

    def table(self) -> str:
        head = ("section", "measure", "value", "unit", "note")
        lines = ["| " + " | ".join(head) + " |", "| --- | --- | ---: | --- | --- |"]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in self.rows]
        for mod, why in self.skipped:
            lines.append(f"| {mod} | skipped | | | {why.replace('|', '/')} |")
        return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:  # NaN: not measured
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wanted = argv or MODULES
    report = Report()
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    print(f"FlowLens benchmarks on {platform.node()}: {psutil.cpu_count()} CPUs, Python {platform.python_version()},"
          f" load average {load_before:.2f} (other work on the machine skews every number)", flush=True)
    for name in wanted:
        try:
            mod = importlib.import_module(f"bench.{name}")
        except ImportError as e:
            report.skipped.append((name, f"not available: {e}"))
            print(f"{name}: skipped: {e}", flush=True)
            continue
        print(f"{name}:", flush=True)
        t0 = time.monotonic()
        try:
            mod.run(report)
        except Exception as e:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            report.skipped.append((name, f"failed: {type(e).__name__}: {e}"))
            print(f"{name}: failed: {e}", flush=True)
        print(f"{name}: {time.monotonic() - t0:.1f} s", flush=True)
    table = report.table()
    # a whole run is the record (bench.md); a run of some modules writes beside it, never over it
    out = REPO / "tests" / "artifacts" / ("bench.md" if wanted == MODULES else f"bench-{'-'.join(wanted)}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# FlowLens benchmarks\n\n{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {platform.node()}, "
              f"{psutil.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"{time.monotonic() - started:.0f} s in all; 1-minute load average {load_before:.2f} at the start,"
              f" {os.getloadavg()[0]:.2f} at the end (other work on the machine skews every number).\n\n")
    out.write_text(header + table + "\n")
    print()
    print(table)
    print(f"\nwritten to {out.relative_to(REPO)} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
