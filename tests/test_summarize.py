"""pytest for tests/summarize.py: the summary line of tests/run-all.sh on sample meson logs."""
import io
import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import summarize  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "fixtures", "summarize")
FINAL = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$")


def check_tap(name, results, stderr="", result="OK", plan=True):
    """A meson entry for a check suite: results is a list of (test, message or None)."""
    lines = []
    for i, (test, msg) in enumerate(results, 1):
        if msg is None:
            lines.append(f"ok {i} - ../tests/test_{name}.c:core:{test}: Passed")
        else:
            lines.append(f"not ok {i} - ../tests/test_{name}.c:core:{test}: {msg}")
    if plan:
        lines.append(f"1..{len(results)}")
    return {"name": f"libkraken:unit / {name}", "result": result, "returncode": 0 if
            result == "OK" else 1, "stdout": "\n".join(lines) + "\n", "stderr": stderr}


def plain(name, result, stdout="", returncode=None):
    rc = returncode if returncode is not None else {"OK": 0, "SKIP": 77}.get(result, 1)
    return {"name": f"libkraken:api / {name}", "result": result, "returncode": rc,
            "stdout": stdout}


def write_log(path, entries):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for e in entries:
            f.write(json.dumps(e) + "\n")
    return str(path)


def run(*args):
    out = io.StringIO()
    rc = summarize.main([str(a) for a in args], out)
    text = out.getvalue()
    last = text.rstrip("\n").splitlines()[-1]
    m = FINAL.match(last)
    assert m, f"last line {last!r} is not the CI line"
    return rc, tuple(int(x) for x in m.groups()), text


def test_same_tests_in_three_variants_count_once(tmp_path):
    entries = [check_tap("error", [("a", None), ("b", None), ("c", None)])]
    logs = [write_log(tmp_path / v / "testlog.json", entries) for v in ("n", "a", "v")]
    rc, counts, text = run(f"normal={logs[0]}", f"asan={logs[1]}", f"valgrind={logs[2]}")
    assert rc == 0
    assert counts == (3, 0, 0)
    assert re.search(r"^normal\s+3\s+0\s+0$", text, re.M)
    assert re.search(r"^valgrind\s+3\s+0\s+0$", text, re.M)
    assert "3 distinct tests, each counted once; passed 3 in 3 variants" in text


def test_colon_ok_lines_are_not_results(tmp_path):
    # An exit-code test whose output merely looks like TAP counts once, by its result.
    entry = plain("public-headers", "FAIL", "ok: codec.h\nok: node.h\nFAIL: x.h\n")
    rc, counts, text = run("normal=" + write_log(tmp_path / "l.json", [entry]))
    assert (rc, counts) == (1, (0, 1, 0))
    assert "FAIL [normal] api/public-headers: FAIL (exit code 1)" in text


def test_colon_ok_lines_inside_tap_are_ignored(tmp_path):
    entry = {"name": "libkraken:api / x", "result": "OK", "returncode": 0,
             "stdout": "ok: not a result\nok 1 - real\n1..1\n"}
    rc, counts, _ = run("normal=" + write_log(tmp_path / "l.json", [entry]))
    assert (rc, counts) == (0, (1, 0, 0))


def test_every_tap_failure_counts(tmp_path):
    # the audit's case: 2 ok + 3 failures must be 2 passed, 3 failed (not 2 and 1)
    entry = {"name": "libkraken:integration / sync-procs", "result": "FAIL", "returncode": 1,
             "stdout": "ok - one\nnot ok - two\nok - three\nnot ok - four\nnot ok - five\n"
                       "1..5\n"}
    rc, counts, text = run("normal=" + write_log(tmp_path / "l.json", [entry]))
    assert (rc, counts) == (1, (2, 3, 0))
    for what in ("two", "four", "five"):
        assert f"FAIL [normal] integration/sync-procs {what}" in text


def test_crash_without_failing_line_is_a_failure(tmp_path):
    # valgrind run (CK_FORK=no) killed mid-suite: no plan, no "not ok", exit code 99
    entry = check_tap("sync", [("a", None), ("b", None)], result="FAIL", plan=False)
    entry["returncode"] = 99
    rc, counts, text = run("valgrind=" + write_log(tmp_path / "l.json", [entry]))
    assert (rc, counts) == (1, (2, 1, 0))
    assert "FAIL [valgrind] unit/sync (test program): FAIL (exit code 99)" in text


def test_results_missing_from_the_plan_are_failures(tmp_path):
    entry = {"name": "libkraken:unit / x", "result": "FAIL", "returncode": 1,
             "stdout": "1..4\nok 1 - a\nok 2 - b\n"}
    rc, counts, text = run("normal=" + write_log(tmp_path / "l.json", [entry]))
    assert (rc, counts) == (1, (2, 2, 0))
    assert "planned 4 results, only 2 reported" in text


def test_timeout_is_a_failure(tmp_path):
    entry = check_tap("engine", [("a", None)], result="TIMEOUT")
    rc, counts, _ = run("normal=" + write_log(tmp_path / "l.json", [entry]))
    assert (rc, counts) == (1, (1, 1, 0))


def test_check_skip_marker_is_a_skip_not_a_pass(tmp_path):
    entry = check_tap("error", [("a", None), ("as_root", None)],
                      stderr="# SKIP as_root: running as root\n")
    rc, counts, text = run("normal=" + write_log(tmp_path / "l.json", [entry]))
    assert (rc, counts) == (0, (1, 0, 1))
    assert "SKIP [normal] unit/error core:as_root: running as root" in text


def test_skip_marker_does_not_hide_a_failure(tmp_path):
    entry = check_tap("error", [("as_root", "assertion failed")], result="FAIL",
                      stderr="# SKIP as_root: running as root\n")
    rc, counts, _ = run("normal=" + write_log(tmp_path / "l.json", [entry]))
    assert (rc, counts) == (1, (0, 1, 0))


def test_tap_skip_directive_and_skipped_plan(tmp_path):
    entries = [
        {"name": "libkraken:api / a", "result": "OK", "returncode": 0,
         "stdout": "ok 1 - x\nok 2 - y # SKIP no network\n1..2\n"},
        {"name": "libkraken:integration / sync-netns", "result": "SKIP", "returncode": 0,
         "stdout": "1..0 # SKIP 'ip netns add' is not permitted here\n"},
        plain("exit77", "SKIP", "SKIP: no clang\n"),
    ]
    rc, counts, text = run("normal=" + write_log(tmp_path / "l.json", entries))
    assert (rc, counts) == (0, (1, 0, 3))
    assert "SKIP [normal] api/a y: no network" in text
    assert "integration/sync-netns (whole test): 'ip netns add' is not permitted here" in text
    assert "SKIP [normal] api/exit77: SKIP: no clang" in text


def test_skipped_in_one_variant_passed_in_another(tmp_path):
    normal = write_log(tmp_path / "n.json", [check_tap("node", [("memory", None)])])
    asan = write_log(tmp_path / "a.json", [check_tap("node", [("memory", None)],
                                                     stderr="# SKIP memory: no stats\n")])
    rc, counts, text = run(f"normal={normal}", f"asan={asan}")
    assert (rc, counts) == (0, (1, 0, 0))
    assert "SKIP [asan] unit/node core:memory: no stats" in text
    assert re.search(r"^asan\s+0\s+0\s+1$", text, re.M)


def test_failure_in_one_variant_fails_the_test_once(tmp_path):
    normal = write_log(tmp_path / "n.json", [check_tap("url", [("a", None), ("b", None)])])
    vg = write_log(tmp_path / "v.json", [check_tap("url", [("a", None), ("b", "leak")],
                                                   result="FAIL")])
    rc, counts, text = run(f"normal={normal}", f"valgrind={vg}")
    assert (rc, counts) == (1, (1, 1, 0))
    assert "FAIL [valgrind] unit/url core:b: leak" in text


def test_broken_build_is_a_failure_on_the_line(tmp_path):
    normal = write_log(tmp_path / "n.json", [check_tap("url", [("a", None)])])
    rc, counts, text = run(f"normal={normal}", "--broken",
                           "asan=compilation failed (see build-asan.build.log)")
    assert (rc, counts) == (1, (1, 1, 0))
    assert "FAIL [asan] build of asan: compilation failed (see build-asan.build.log)" in text


def test_missing_or_empty_log_is_a_failure(tmp_path):
    empty = write_log(tmp_path / "e.json", [])
    rc, counts, text = run(f"normal={empty}", f"fuzz={tmp_path / 'absent.json'}")
    assert (rc, counts) == (1, (0, 2, 0))
    assert "lists no tests" in text and "unreadable" in text


def test_nothing_at_all_never_reads_as_success():
    rc, counts, text = run()
    assert (rc, counts) == (1, (0, 1, 0))
    assert "nothing ran" in text


def test_protocol_from_meson_info_wins(tmp_path):
    # an exit-code test printing TAP-like lines counts once (meson-info says exitcode)
    build = tmp_path / "build"
    log = write_log(build / "meson-logs" / "testlog.json",
                    [plain("script", "OK", "1..2\nok 1 - a\nok 2 - b\n")])
    os.makedirs(build / "meson-info")
    with open(build / "meson-info" / "intro-tests.json", "w") as f:
        json.dump([{"name": "script", "suite": ["libkraken:api"], "protocol": "exitcode"}], f)
    rc, counts, _ = run(f"normal={log}")
    assert (rc, counts) == (0, (1, 0, 0))


def test_fuzz_log_format(tmp_path):
    log = write_log(tmp_path / "fuzz-testlog.json",
                    [{"name": "fuzz_json", "result": "OK"}, {"name": "fuzz_pb", "result": "FAIL"}])
    rc, counts, text = run(f"fuzz={log}")
    assert (rc, counts) == (1, (1, 1, 0))
    assert "FAIL [fuzz] fuzz_pb" in text


def test_real_sample_logs():
    """Logs captured from real runs (normal, and valgrind with a crashed suite)."""
    rc, counts, text = run(f"normal={os.path.join(SAMPLE, 'normal.json')}",
                           f"valgrind={os.path.join(SAMPLE, 'valgrind-crash.json')}")
    assert rc == 1
    assert counts == (13, 1, 1)
    assert "SKIP [normal] unit/error core:atomic_write_unwritable_directory: running as root" \
        in text
    assert "FAIL [valgrind] unit/node (test program)" in text


@pytest.mark.parametrize("line,counted", [
    ("ok 1 - a", True), ("not ok 2 - b", True), ("ok", True), ("ok - x", True),
    ("ok: x.h", False), ("okay", False), ("FAIL - x", False), ("# ok 1", False),
])
def test_tap_result_pattern(line, counted):
    assert bool(summarize.TAP_RESULT.match(line)) == counted


def test_pytest_tap_wrapper(tmp_path):
    """tests/pytest_tap.py: one TAP line per pytest case, skips named, then counted right."""
    import subprocess
    sample = os.path.join(SAMPLE, "pytest_sample.py")
    run_ = subprocess.run([sys.executable, os.path.join(HERE, "pytest_tap.py"), sample],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=SAMPLE)
    assert run_.returncode == 1
    lines = [l for l in run_.stdout.splitlines() if not l.startswith("#")]
    assert lines == [
        "ok 1 - pytest_sample.py::test_passes",
        "not ok 2 - pytest_sample.py::test_fails",
        "ok 3 - pytest_sample.py::test_skipped # SKIP needs a network (hash) of nodes",
        "ok 4 - pytest_sample.py::test_teardown_fails",
        "not ok 5 - pytest_sample.py::test_teardown_fails (teardown)",
        "1..5",
    ]
    assert "# E       assert (1 + 1) == 3" in run_.stdout
    assert "test_fails" in run_.stderr  # pytest's own report goes to stderr
    entry = {"name": "libkraken:integration / sample", "result": "FAIL", "returncode": 1,
             "stdout": run_.stdout}
    rc, counts, text = run("normal=" + write_log(tmp_path / "l.json", [entry]))
    assert (rc, counts) == (1, (2, 2, 1))
    assert "SKIP [normal] integration/sample pytest_sample.py::test_skipped: needs a network" \
        in text
