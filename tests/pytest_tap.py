#!/usr/bin/python3
"""Run pytest and report in TAP, one line per test, for meson's protocol 'tap'.

Usage (meson): test(NAME, py, args: [files('pytest_tap.py'), files('test_x.py')],
                    protocol: 'tap')

Standard output carries only TAP:
    ok N - tests/test_x.py::test_name
    not ok N - tests/test_x.py::test_name      (its 'E' lines follow as '# ' comments)
    ok N - tests/test_x.py::test_name # SKIP reason
    1..N
so that tests/summarize.py counts each pytest case once and names every skip, as it does for
the check suites. pytest's own report (tracebacks, summary) and anything the tests' child
processes print go to standard error. A failure in setup or teardown is a failed result of
its own. The exit status is pytest's (0: all passed or skipped).
"""
import os
import sys

import pytest


def _clean(text):
    # '#' starts a TAP directive: keep it out of names and reasons
    return " ".join(str(text).replace("#", "(hash)").split())


class TapReporter:
    def __init__(self, out):
        self.count = 0
        self.out = out

    def _line(self, ok, name, directive=""):
        self.count += 1
        status = "ok" if ok else "not ok"
        self.out.write(f"{status} {self.count} - {_clean(name)}{directive}\n")
        self.out.flush()

    def _diagnostics(self, report):
        # the error lines only; the whole traceback is in pytest's report on stderr
        text = getattr(report, "longreprtext", "") or ""
        errors = [l for l in text.splitlines() if l.startswith("E ")] or text.splitlines()[-3:]
        for line in errors[:20]:
            self.out.write(f"# {line}\n")
        self.out.flush()

    def pytest_runtest_logreport(self, report):
        name = report.nodeid
        if report.skipped:
            if hasattr(report, "wasxfail"):
                reason = "expected failure: " + (report.wasxfail or "xfail")
            elif isinstance(report.longrepr, tuple):
                reason = report.longrepr[2]
            else:
                reason = str(report.longrepr)
            reason = reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
            self._line(True, name, f" # SKIP {_clean(reason)}")
        elif report.failed:
            where = "" if report.when == "call" else f" ({report.when})"
            self._line(False, name + where)
            self._diagnostics(report)
        elif report.when == "call":
            if hasattr(report, "wasxfail"):
                self._line(False, name + " (passed, but marked as an expected failure)")
            else:
                self._line(True, name)

    def pytest_collectreport(self, report):
        if report.failed:
            self._line(False, f"collect {report.nodeid or 'tests'}")
            self._diagnostics(report)

    def pytest_sessionfinish(self, session, exitstatus):
        if self.count == 0 and exitstatus == 5:
            self.out.write("1..0 # SKIP no tests collected\n")
        elif self.count == 0 and exitstatus != 0:
            self._line(False, f"pytest stopped with exit status {int(exitstatus)} (see stderr)")
            self.out.write(f"1..{self.count}\n")
        else:
            self.out.write(f"1..{self.count}\n")
        self.out.flush()


def main(argv):
    # TAP on the real stdout; pytest's terminal and every child process write to stderr
    tap = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    rc = pytest.main(["-q", "-p", "no:cacheprovider"] + argv, plugins=[TapReporter(tap)])
    tap.close()
    # 5 = no tests collected: reported as a skip above, not a failure
    return 0 if rc == 5 else int(rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
