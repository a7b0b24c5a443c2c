#!/bin/sh
# Usage: check_man_pages.sh KRAKEN_DAEMON DAEMON_MAN KRAKENCTL KRAKENCTL_MAN
#
# The man pages are what an operator reads first: every flag a program's --help lists, every
# krakenctl command and every config key `kraken-daemon -printrc` prints must be documented in
# the program's man page. One TAP check per man page, naming whatever is missing.
. "$(dirname "$0")/tap.sh"
daemon=$1 daemon_man=$2 ctl=$3 ctl_man=$4

# man_text FILE: the roff source with escapes that hide words removed (\- is a plain dash,
# \fB..\fR change fonts), so that "\-module\-dir" reads as "-module-dir".
man_text() {
    sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(em/ /g' "$1"
}

# help_flags: the flags of --help's option lines: words that start with - or -- (a word inside
# the description, such as "state-file", is not one).
help_flags() {
    sed -n 's/^ \{1,\}\(-[^ ].*\)$/ \1/p' | grep -o -E '[ ,]--?[a-z][a-z0-9-]*' |
        sed 's/^[ ,]//' | sort -u
}

# missing TEXT_FILE WORD...: print the words that do not occur in the text as whole words.
missing() {
    text=$1; shift
    for w in "$@"; do
        grep -q -E -e "(^|[^-a-z0-9])$w([^-a-z0-9]|\$)" "$text" || printf '%s ' "$w"
    done
}

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

man_text "$daemon_man" >"$tmp/daemon.txt"
daemon_flags=$("$daemon" --help | help_flags)
keys=$("$daemon" -printrc | sed -n 's/^\([a-z][a-z0-9]*\):.*/\1/p')
if [ -z "$daemon_flags" ] || [ -z "$keys" ]; then
    tap_fail "kraken-daemon: --help or -printrc printed nothing to check"
else
    gone=$(missing "$tmp/daemon.txt" $daemon_flags)
    if [ -z "$gone" ]; then tap_ok "kraken-daemon(8) documents every flag of --help"
    else tap_fail "kraken-daemon(8) lacks the flags: $gone"; fi
    gone=$(missing "$tmp/daemon.txt" $keys)
    if [ -z "$gone" ]; then tap_ok "kraken-daemon(8) documents every config key of -printrc"
    else tap_fail "kraken-daemon(8) lacks the config keys: $gone"; fi
fi

man_text "$ctl_man" >"$tmp/ctl.txt"
"$ctl" --help >"$tmp/ctl.help"
ctl_flags=$(sed '/^Commands:/,$d' "$tmp/ctl.help" | help_flags)
commands=$(sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z]*\)[ ,].*/\1/p' "$tmp/ctl.help")
if [ -z "$ctl_flags" ] || [ -z "$commands" ]; then
    tap_fail "krakenctl: --help listed no options or no commands to check"
else
    gone=$(missing "$tmp/ctl.txt" $ctl_flags)
    if [ -z "$gone" ]; then tap_ok "krakenctl(1) documents every option of --help"
    else tap_fail "krakenctl(1) lacks the options: $gone"; fi
    gone=$(missing "$tmp/ctl.txt" $commands)
    if [ -z "$gone" ]; then tap_ok "krakenctl(1) documents every command of --help"
    else tap_fail "krakenctl(1) lacks the commands: $gone"; fi
fi
tap_done
