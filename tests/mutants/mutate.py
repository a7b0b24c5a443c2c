#!/usr/bin/python3
"""Helper of tests/mutants/run.sh: read mutants.txt, apply or revert one mutant, report.

  mutate.py list MUTANTS                         names, one per line
  mutate.py tests MUTANTS NAME                  the meson tests to run for NAME ("" = unit suites)
  mutate.py apply MUTANTS NAME ROOT             apply NAME under ROOT (backup kept); exit 3 if
                                                the snippet is not found exactly once (stale)
  mutate.py revert MUTANTS NAME ROOT            restore the file from the backup
  mutate.py failures TESTLOG                    the failing tests in a meson testlog.json
  mutate.py failed-tests TESTLOG                their meson test names
  mutate.py confirmed TESTLOG CLEANLOG          failures in TESTLOG that CLEANLOG (the same
                                                tests on the unmodified tree) does not repeat
  mutate.py table MUTANTS RESULTS               markdown table from run.sh's results file
"""
import json
import os
import re
import sys

KEYS = ("name", "file", "find", "replace", "breaks", "guard")
OPTIONAL = ("tests",)


def load(path):
    mutants, cur = [], {}
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("#"):
                continue
            if not line.strip():
                if cur:
                    mutants.append(cur)
                cur = {}
                continue
            key, sep, value = line.partition(":")
            if not sep or key not in KEYS + OPTIONAL:
                sys.exit(f"{path}: bad line: {line!r}")
            cur[key] = value[1:] if value.startswith(" ") else value
    if cur:
        mutants.append(cur)
    for m in mutants:
        missing = [k for k in KEYS if k not in m]
        if missing:
            sys.exit(f"{path}: mutant {m.get('name', '?')}: missing {', '.join(missing)}")
    return mutants


def find(mutants, name):
    for m in mutants:
        if m["name"] == name:
            return m
    sys.exit(f"no mutant named {name}")


def unescape(text):
    return text.replace("\\n", "\n")


def apply(m, root):
    path = os.path.join(root, m["file"])
    with open(path) as f:
        text = f.read()
    old, new = unescape(m["find"]), unescape(m["replace"])
    count = text.count(old)
    if count != 1:
        print(f"{m['name']}: snippet found {count} times in {m['file']}", file=sys.stderr)
        return 3
    with open(path + ".orig", "w") as f:
        f.write(text)
    with open(path, "w") as f:
        f.write(text.replace(old, new))
    return 0


def revert(m, root):
    path = os.path.join(root, m["file"])
    if os.path.exists(path + ".orig"):
        os.replace(path + ".orig", path)
        # The backup is older than the mutant's objects: without a new mtime, ninja would keep
        # the mutant compiled in for every later run.
        os.utime(path, None)
    return 0


def failed_entries(log):
    """(meson test name, 'suite/test' or 'suite/test tcase:name') for each failure."""
    out = []
    try:
        with open(log) as f:
            entries = [json.loads(l) for l in f if l.strip()]
    except (OSError, ValueError) as err:
        return [("", f"(no test log: {err})")]
    for e in entries:
        if e.get("result") in ("OK", "SKIP", "EXPECTEDFAIL"):
            continue
        name = e.get("name", "?").split(":", 1)[-1].replace(" / ", "/")
        test = name.split("/", 1)[-1]
        subs = []
        for desc in re.findall(r"^not ok\b\s*\d*\s*-?\s*(.*)$", e.get("stdout") or "", re.M):
            check = re.match(r"(?:\S*/)?[^/\s:]+\.c:([^:]+:[^:]+):", desc)
            # check: "file.c:tcase:test: message"; pytest: "path/test_x.py::test_name"
            subs.append(check.group(1) if check else re.sub(r"^\S*/", "", desc.strip()))
        if subs:
            out.extend((test, f"{name} {s}") for s in subs)
        else:
            out.append((test, f"{name} ({e.get('result')})"))
    return out


def failures(log):
    return [shown for _, shown in failed_entries(log)]


def failed_tests(log):
    """The meson test names that failed (to run again on the unmodified tree)."""
    return sorted({test for test, _ in failed_entries(log) if test})


def confirmed(mutant_log, clean_log):
    """Failures of the mutant run that did not recur on the unmodified tree."""
    again = set(failures(clean_log)) if clean_log else set()
    return [f for f in failures(mutant_log) if f not in again]


def table(mutants, results):
    got = {}
    with open(results) as f:
        for line in f:
            name, _, rest = line.rstrip("\n").partition("\t")
            verdict, _, by = rest.partition("\t")
            got[name] = (verdict, by)
    rows = ["| mutant | file | breaks | result | caught by |", "|---|---|---|---|---|"]
    for m in mutants:
        verdict, by = got.get(m["name"], ("not run", ""))
        rows.append(f"| {m['name']} | {m['file']} | {m['breaks']} | {verdict} | {by} |")
    return "\n".join(rows)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd = argv[0]
    if cmd == "failures":
        print("; ".join(failures(argv[1])))
        return 0
    if cmd == "failed-tests":
        print(" ".join(failed_tests(argv[1])))
        return 0
    if cmd == "confirmed":
        print("; ".join(confirmed(argv[1], argv[2] if len(argv) > 2 else None)))
        return 0
    mutants = load(argv[1])
    if cmd == "list":
        print("\n".join(m["name"] for m in mutants))
        return 0
    if cmd == "tests":
        print(find(mutants, argv[2]).get("tests", ""))
        return 0
    if cmd == "apply":
        return apply(find(mutants, argv[2]), argv[3])
    if cmd == "revert":
        return revert(find(mutants, argv[2]), argv[3])
    if cmd == "table":
        print(table(mutants, argv[2]))
        return 0
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
