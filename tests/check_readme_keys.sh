#!/bin/bash
# Usage: check_readme_keys.sh README.md NODE_KEY_PROGRAM
#
# The README tells operators how to make sync keys with bash and openssl (no C program). Run
# that recipe exactly as printed, in a scratch directory, and check the child's key file is the
# one libkraken derives (tests/node_key.c), so the recipe cannot drift from the library.
. "$(dirname "$0")/tap.sh"
readme=$1 node_key=$2
if ! command -v openssl >/dev/null || ! command -v od >/dev/null; then
    echo "1..0 # SKIP openssl or od not installed"
    exit 0
fi
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
# The ```sh block that follows the paragraph starting "Sync keys without writing a program".
sed -n '/^Sync keys without writing a program/,/^A grandchild/p' "$readme" |
    sed -n '/^```sh$/,/^```$/{/^```/d;p}' >"$dir/recipe.sh"
if [ ! -s "$dir/recipe.sh" ]; then
    tap_fail "README: no key recipe after 'Sync keys without writing a program'"
    tap_done
fi
if (cd "$dir" && bash -e recipe.sh) 2>"$dir/err"; then
    tap_ok "README key recipe runs"
else
    tap_fail "README key recipe failed: $(head -c 300 "$dir/err")"
    tap_done
fi
id=$(sed -n 's/^ID=\([0-9a-f-]*\).*/\1/p' "$dir/recipe.sh")
mode=$(stat -c %a "$dir/$id.key" 2>/dev/null)
got=$(od -An -v -tx1 "$dir/$id.key" 2>/dev/null | tr -d ' \n')
want=$("$node_key" "$dir/secret" "$id")
if [ -n "$want" ] && [ "$got" = "$want" ] && [ "$mode" = 600 ]; then
    tap_ok "README key recipe: $id.key (mode 600) is kraken_sync_derive_node_key()'s key"
else
    tap_fail "README key recipe: $id.key is '$got' mode '$mode', libkraken derives '$want'"
fi
tap_done
