#!/usr/bin/python3
"""Summarise meson test logs from several build variants into one honest line.

Usage: summarize.py [--broken VARIANT=REASON]... VARIANT=TESTLOG.json...

Each VARIANT (normal, asan, valgrind, fuzz) is a run of the suite; TESTLOG is meson's
testlog.json for it (one JSON object per test). --broken names a variant whose build failed to
configure or compile: it counts as one failure.

What is counted
- A test registered with protocol 'tap' (the check suites and the TAP scripts) counts each of
  its results: "ok N - name", "not ok N - name", "ok N - name # SKIP why". Only real TAP result
  lines count ("ok: x" is not one). Results promised by the plan but never printed, and a test
  that failed (crash, timeout, exit code) without printing a failing result, count one failure
  each, so a crash is never hidden.
- A check test that skipped itself (KRAKEN_SKIP in testutil.h writes "# SKIP name: why" to
  stderr) is a skip, not a pass.
- Any other test counts once by meson's result (OK, SKIP = exit 77, anything else a failure).
- The same test runs in several variants. The final line counts each distinct test ONCE: failed
  if it failed in any variant, passed if it passed in at least one and failed in none, skipped if
  it ran in no variant. Per-variant figures, every failure and every skip are printed above it.

The last line is always "N passed, N failed, N skipped"; the exit status is 1 when anything
failed (including a broken build, a missing log, or no tests at all).
"""
import json
import os
import re
import sys
from collections import OrderedDict

PASS, FAIL, SKIP = "pass", "fail", "skip"

# TAP result line: "ok" / "not ok", optional number, optional "-", description, directive.
TAP_RESULT = re.compile(
    r"^(not ok|ok)(?=\s|$)\s*(\d+)?\s*(?:-\s*)?([^#]*?)\s*"
    r"(?:#\s*(SKIP|TODO)\S*\s*(.*))?$", re.I)
TAP_PLAN = re.compile(r"^1\.\.(\d+)\s*(?:#\s*SKIP\S*\s*(.*))?$", re.I)
TAP_BAIL = re.compile(r"^Bail out!\s*(.*)$")
# check's TAP description: "<path>.c:<tcase>:<test>: <Passed or failure message>"
CHECK_DESC = re.compile(r"^(?:\S*/)?[^/\s:]+\.c:([^:]+):([^:]+):\s?(.*)$")
# testutil.h KRAKEN_SKIP line on stderr
SKIP_MARK = re.compile(r"^# SKIP (\S+): (.*)$", re.M)

OK_RESULTS = ("OK", "EXPECTEDFAIL")


class Outcome:
    """One result of one test (or subtest) in one variant."""

    def __init__(self, status, reason=""):
        self.status = status
        self.reason = reason


def short_name(meson_name):
    """'libkraken:unit / error' -> 'unit/error'."""
    suite, _, name = meson_name.partition(" / ")
    if not name:
        return meson_name
    return suite.split(":", 1)[-1] + "/" + name


def load_protocols(log_path):
    """Test name -> protocol, from the build directory's meson-info next to meson-logs."""
    logs_dir = os.path.dirname(os.path.abspath(log_path))
    if os.path.basename(logs_dir) != "meson-logs":
        return {}
    intro = os.path.join(os.path.dirname(logs_dir), "meson-info", "intro-tests.json")
    try:
        with open(intro) as f:
            tests = json.load(f)
    except (OSError, ValueError):
        return {}
    protocols = {}
    for t in tests:
        for suite in t.get("suite") or [""]:
            protocols[f"{suite} / {t['name']}"] = t.get("protocol", "exitcode")
    return protocols


def describe(desc):
    """A readable subtest name and, for check lines, its message."""
    m = CHECK_DESC.match(desc)
    if m:
        return f"{m.group(1)}:{m.group(2)}", m.group(2), m.group(3)
    return desc, desc, ""


def parse_tap(entry):
    """Subtest outcomes of one TAP test: list of (key, display name, Outcome)."""
    out = []
    planned = None
    plan_skip = None
    bailed = None
    marks = dict(SKIP_MARK.findall(entry.get("stderr") or ""))
    count = 0
    for line in (entry.get("stdout") or "").splitlines():
        line = line.rstrip()
        m = TAP_RESULT.match(line)
        if m:
            count += 1
            num = int(m.group(2)) if m.group(2) else count
            display, test_fn, message = describe(m.group(3))
            ok = m.group(1).lower() == "ok"
            directive = (m.group(4) or "").upper()
            if directive == "SKIP" and ok:
                outcome = Outcome(SKIP, m.group(5) or "")
            elif directive == "TODO":
                outcome = Outcome(FAIL, "TODO passed") if ok else Outcome(SKIP, "TODO: "
                                                                           + (m.group(5) or ""))
            elif ok and test_fn in marks:
                outcome = Outcome(SKIP, marks[test_fn])
            elif ok:
                outcome = Outcome(PASS)
            else:
                outcome = Outcome(FAIL, message or m.group(3))
            out.append((num, display, outcome))
            continue
        m = TAP_PLAN.match(line)
        if m and planned is None:
            planned = int(m.group(1))
            if planned == 0:
                plan_skip = m.group(2) or "no tests planned"
            continue
        m = TAP_BAIL.match(line)
        if m:
            bailed = m.group(1) or "bailed out"
    if planned is not None:
        for num in range(count + 1, planned + 1):
            out.append((num, f"#{num}", Outcome(FAIL, f"planned {planned} results, "
                                                      f"only {count} reported")))
    result = entry.get("result")
    if bailed is not None:
        out.append(("bail", "Bail out!", Outcome(FAIL, bailed)))
    if planned is None and count == 0 and result == "SKIP":
        out.append(("all", "(whole test)", Outcome(SKIP, last_line(entry))))
    elif planned == 0 and count == 0 and result in OK_RESULTS + ("SKIP",):
        out.append(("all", "(whole test)", Outcome(SKIP, plan_skip)))
    elif result not in OK_RESULTS + ("SKIP",) and not any(o.status == FAIL for _, _, o in out):
        out.append(("exit", "(test program)", Outcome(FAIL, exit_reason(entry))))
    return out


def last_line(entry):
    lines = [l for l in (entry.get("stdout") or "").splitlines() if l.strip()]
    return lines[-1].strip() if lines else "no reason given"


def exit_reason(entry):
    rc = entry.get("returncode")
    return f"{entry.get('result')} (exit code {rc}) without a failing result line"


def parse_plain(entry):
    result = entry.get("result")
    if result in OK_RESULTS:
        outcome = Outcome(PASS)
    elif result == "SKIP":
        outcome = Outcome(SKIP, last_line(entry))
    else:
        outcome = Outcome(FAIL, f"{result} (exit code {entry.get('returncode')})")
    return [("all", "", outcome)]


def read_log(path):
    """Outcomes of one meson testlog: list of ((test, subtest key), display, Outcome)."""
    protocols = load_protocols(path)
    results = []
    with open(path) as log:
        for line in log:
            if not line.strip():
                continue
            entry = json.loads(line)
            name = entry.get("name", "?")
            protocol = protocols.get(name)
            if protocol is None:  # no build info: a TAP stream has a plan or numbered results
                stdout = entry.get("stdout") or ""
                tap = re.search(r"^(1\.\.\d+|(not )?ok \d+\b)", stdout, re.M)
                protocol = "tap" if tap else "exitcode"
            subtests = parse_tap(entry) if protocol == "tap" else parse_plain(entry)
            test = short_name(name)
            for key, display, outcome in subtests:
                shown = f"{test} {display}".rstrip() if display else test
                results.append(((test, key), shown, outcome))
    return results


class Summary:
    def __init__(self):
        self.variants = OrderedDict()   # variant -> [passed, failed, skipped]
        self.tests = OrderedDict()      # (test, key) -> {"name": shown, variant: Outcome}
        self.notes = []                 # failures that are not tests (logs, builds)

    def add(self, variant, key, shown, outcome):
        counts = self.variants.setdefault(variant, [0, 0, 0])
        counts[(PASS, FAIL, SKIP).index(outcome.status)] += 1
        record = self.tests.setdefault(key, OrderedDict(name=shown))
        previous = record.get(variant)
        if previous is None or outcome.status == FAIL:
            record[variant] = outcome

    def add_log(self, variant, path):
        try:
            results = read_log(path)
        except (OSError, ValueError) as err:
            self.add(variant, ("log", variant), f"test log of {variant}",
                     Outcome(FAIL, f"unreadable: {err}"))
            return
        if not results:
            self.add(variant, ("log", variant), f"test log of {variant}",
                     Outcome(FAIL, f"{path} lists no tests"))
        for key, shown, outcome in results:
            self.add(variant, key, shown, outcome)

    def add_broken(self, variant, reason):
        self.add(variant, ("build", variant), f"build of {variant}", Outcome(FAIL, reason))

    def overall(self, record):
        statuses = [o.status for v, o in record.items() if v != "name"]
        if FAIL in statuses:
            return FAIL
        return PASS if PASS in statuses else SKIP

    def report(self, out):
        width = max([len(v) for v in self.variants] + [7])
        print(f"{'variant':<{width}}  {'passed':>6} {'failed':>6} {'skipped':>7}", file=out)
        for variant, (p, f, s) in self.variants.items():
            print(f"{variant:<{width}}  {p:>6} {f:>6} {s:>7}", file=out)
        totals = {PASS: 0, FAIL: 0, SKIP: 0}
        passed_in = {}
        for record in self.tests.values():
            status = self.overall(record)
            totals[status] += 1
            if status == PASS:
                n = sum(1 for v, o in record.items() if v != "name" and o.status == PASS)
                passed_in[n] = passed_in.get(n, 0) + 1
        for record in self.tests.values():
            for variant, o in record.items():
                if variant != "name" and o.status == FAIL:
                    print(f"FAIL [{variant}] {record['name']}: {o.reason}", file=out)
        skips = OrderedDict()
        for record in self.tests.values():
            for variant, o in record.items():
                if variant != "name" and o.status == SKIP:
                    skips.setdefault((record["name"], o.reason), []).append(variant)
        for (name, reason), variants in skips.items():
            print(f"SKIP [{', '.join(variants)}] {name}: {reason}", file=out)
        if not self.tests:
            totals[FAIL] += 1
            print("FAIL no test logs given: nothing ran", file=out)
        spread = ", ".join(f"{n} in {k} variant{'s' if k != 1 else ''}"
                           for k, n in sorted(passed_in.items(), reverse=True))
        print(f"{len(self.tests)} distinct tests, each counted once"
              + (f"; passed {spread}" if spread else ""), file=out)
        print(f"{totals[PASS]} passed, {totals[FAIL]} failed, {totals[SKIP]} skipped", file=out)
        return 0 if totals[FAIL] == 0 else 1


def main(argv, out=sys.stdout):
    summary = Summary()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--broken" and i + 1 < len(args):
            variant, _, reason = args[i + 1].partition("=")
            summary.add_broken(variant, reason or "build failed")
            i += 2
            continue
        variant, sep, path = arg.partition("=")
        if not sep:
            variant, path = arg, arg
        summary.add_log(variant, path)
        i += 1
    return summary.report(out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
