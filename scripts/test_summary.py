#!/usr/bin/env python3
"""Totals meson's unit tests (testlog.json) and pytest's integration tests (JUnit XML)
into the single closing line of scripts/test.sh: "N passed, N failed, N skipped".

Usage: test_summary.py [--meson TESTLOG.json] [--junit JUNIT.xml]...
                       [--pass NAME]... [--fail REASON]... [--skip REASON]...
Every --junit report counts (the main run's and one per PostgreSQL version of the
version matrix, whose test names carry the version, e.g. "test_x[pg17]").
Each --fail adds one failure (a build that broke, pytest collecting nothing, a server
left behind) so that it cannot pass silently; each --pass one passed test run outside
meson and pytest (a fuzz target's timed run). Exit status 1 when anything failed.
"""

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET

MESON_PASS = {"OK", "EXPECTEDFAIL"}
MESON_SKIP = {"SKIP"}


def count_meson(path):
    passed = failed = skipped = 0
    failures = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            result = rec.get("result", "ERROR")
            if result in MESON_PASS:
                passed += 1
            elif result in MESON_SKIP:
                skipped += 1
            else:
                failed += 1
                failures.append(f"unit: {rec.get('name', '?')} ({result})")
    return passed, failed, skipped, failures


def count_junit(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    passed = failed = skipped = 0
    failures = []
    for suite in suites:
        for case in suite.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
                failures.append(f"integration: {name}")
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped, failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meson")
    ap.add_argument("--junit", action="append", default=[])
    ap.add_argument("--pass", dest="passes", action="append", default=[])
    ap.add_argument("--fail", action="append", default=[])
    ap.add_argument("--skip", action="append", default=[])
    args = ap.parse_args()

    passed = failed = skipped = 0
    failures = []
    reports = [(args.meson, count_meson, "meson test log")]
    reports += [(path, count_junit, "pytest JUnit report") for path in args.junit]
    for path, counter, what in reports:
        if not path:
            continue
        if not os.path.exists(path):
            failed += 1
            failures.append(f"{what} {path} missing")
            continue
        try:
            p, f, s, names = counter(path)
        except (OSError, ValueError, ET.ParseError) as e:
            failed += 1
            failures.append(f"{what} {path} unreadable: {e}")
            continue
        passed, failed, skipped = passed + p, failed + f, skipped + s
        failures += names
    passed += len(args.passes)
    failed += len(args.fail)
    failures += args.fail
    skipped += len(args.skip)

    if failures:
        print("failed:")
        for name in failures:
            print(f"  {name}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
