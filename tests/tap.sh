# TAP output for the shell test scripts (source it: . "$(dirname "$0")/tap.sh").
#
# Every script test reports in TAP (https://testanything.org), like the check suites, so that
# meson (protocol: 'tap') and tests/summarize.py count each check exactly once:
#   ok N - description            a passed check
#   not ok N - description        a failed check
#   ok N - description # SKIP why a check that could not run here
#   1..0 # SKIP why               the whole script could not run here
# Diagnostics go to stderr or after '#', never as lines that look like results.

tap_n=0
tap_failed=0

# tap_result 0|1 DESCRIPTION...: one result line (0 = passed).
tap_result() {
    st=$1; shift
    tap_n=$((tap_n + 1))
    if [ "$st" -eq 0 ]; then
        echo "ok $tap_n - $*"
    else
        echo "not ok $tap_n - $*"
        tap_failed=$((tap_failed + 1))
    fi
}

tap_ok() { tap_result 0 "$@"; }
tap_fail() { tap_result 1 "$@"; }

# tap_diag TEXT...: a comment line (ignored by parsers, shown in logs).
tap_diag() { printf '%s\n' "$*" | sed 's/^/# /'; }

# tap_skip DESCRIPTION REASON: one check that could not run.
tap_skip() {
    tap_n=$((tap_n + 1))
    echo "ok $tap_n - $1 # SKIP $2"
}

# tap_skip_all REASON: nothing can run here; exits.
tap_skip_all() {
    echo "1..0 # SKIP $*"
    exit 0
}

# tap_done: the plan (after the results) and the exit status (1 when any check failed).
tap_done() {
    echo "1..$tap_n"
    if [ "$tap_failed" -eq 0 ]; then exit 0; fi
    exit 1
}
