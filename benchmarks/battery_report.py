"""Run the bad-input and fault battery (`tests/test_battery.py`) and print its outcomes as a table, by area.

    python benchmarks/battery_report.py            # the whole battery (about 10 minutes on 2 cores)
    python benchmarks/battery_report.py -k text-   # some cases

Each case's outcome is what the run did: `early error` (one `error:` line, exit 2, as expected), `handled` (exit 0
and its check passed), or, for a failed case, what went wrong: `hang` (no exit within the timeout), `raw traceback`,
`unclear error` (another exit code or message), `silent wrong result` (exit 0 where an error was due, or a check
that failed). The goal is no row but the first two.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.path.join(ROOT, "benchmarks", "runs", "battery")
GOOD = ("early error", "handled")


def _failure_kind(message: str, expected_error: bool) -> str:
    if message.startswith("hang"):
        return "hang"
    if message.startswith("raw traceback"):
        return "raw traceback"
    if expected_error and "exit code 0" in message:
        return "silent wrong result"
    if expected_error:
        return "unclear error"
    return "silent wrong result" if "exit code" not in message else "unclear error"


def _outcomes(report: str) -> list[tuple[str, str, str]]:
    """(case id, area, outcome) of each test case in a junit XML report."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_battery import CASES

    cases = {case.id: case for case in CASES}
    rows = []
    for testcase in ElementTree.parse(report).getroot().iter("testcase"):
        case_id = testcase.get("name").removeprefix("test_case[").removesuffix("]")
        case = cases[case_id]
        expected_error = type(case.expect).__name__ == "Error"
        failure = testcase.find("failure")
        if testcase.find("skipped") is not None:
            outcome = "skipped"
        elif failure is None:
            outcome = "early error" if expected_error else "handled"
        else:
            message = (failure.get("message") or "").removeprefix("AssertionError: ")
            outcome = _failure_kind(message, expected_error)
        rows.append((case_id, case.area, outcome))
    return rows


def main(argv: list[str]) -> int:
    os.makedirs(RUNS, exist_ok=True)
    report = os.path.join(RUNS, "battery.xml")
    command = [sys.executable, "-m", "pytest", "tests/test_battery.py", "-q", "-p", "no:cacheprovider"]
    subprocess.run([*command, f"--junitxml={report}", *argv], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    rows = _outcomes(report)
    kinds = list(GOOD) + sorted({outcome for _, _, outcome in rows} - set(GOOD))
    by_area = collections.defaultdict(collections.Counter)
    for _, area, outcome in rows:
        by_area[area][outcome] += 1
    print("\n| area | cases | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    for area in sorted(by_area):
        counts = by_area[area]
        print(f"| {area} | {sum(counts.values())} | " + " | ".join(str(counts[k]) for k in kinds) + " |")
    total = collections.Counter(outcome for _, _, outcome in rows)
    print(f"| all | {len(rows)} | " + " | ".join(str(total[k]) for k in kinds) + " |")
    for case_id, _, outcome in rows:
        if outcome not in GOOD:
            print(f"- {case_id}: {outcome}")
    return 0 if all(outcome in GOOD for _, _, outcome in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
