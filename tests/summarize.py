#!/usr/bin/python3
"""Print one line 'N passed, N failed' for meson testlog.json files.

A TAP test (check suites) counts each of its subtests ("ok N", "not ok N");
any other test counts once by its result. A TAP test that failed without
reporting a failing subtest (crash, timeout) counts one extra failure, so a
crash is never hidden.
"""
import json
import re
import sys

TAP = re.compile(r"^(not ok|ok)\b", re.M)


def count(path):
    passed = failed = 0
    with open(path) as log:
        for line in log:
            entry = json.loads(line)
            result = entry.get("result")
            if result == "SKIP":
                continue
            ok = result in ("OK", "EXPECTEDFAIL")
            marks = TAP.findall(entry.get("stdout") or "")
            if marks:
                good = sum(1 for m in marks if m == "ok")
                bad = len(marks) - good
                if not ok and bad == 0:
                    bad = 1
                passed += good
                failed += bad
            elif ok:
                passed += 1
            else:
                failed += 1
    return passed, failed


def main(paths):
    total_passed = total_failed = 0
    for path in paths:
        try:
            p, f = count(path)
        except OSError as err:
            print(f"summarize: {err} (counted as one failure)", file=sys.stderr)
            p, f = 0, 1
        total_passed += p
        total_failed += f
    print(f"{total_passed} passed, {total_failed} failed")
    return 0 if total_failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
