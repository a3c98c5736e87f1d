#!/usr/bin/env bash
# CLI smoke test of an installed dsroll: the three commands pip puts on PATH (dsroll,
# kubectl-dsroll, kubectl_complete-dsroll), run as a user would, on a copy of the
# examples in a fresh git repository. No cluster needed. `make test` runs it in the
# minimum-versions venv, where a dependency too old breaks the command line first
# (a crash at start, `--help`, a flag silently ignored).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$root/environments" "$root/templates" "$root/rendered" "$work/"
cd "$work"
git init -q . && git add -A && git -c user.name=smoke -c user.email=smoke@localhost commit -qm examples

fail() { echo "smoke: $*" >&2; exit 1; }
# expect CODE COMMAND...: run it, keep stdout in $out, fail unless it exits CODE.
expect() {
  local want="$1" rc=0
  shift
  out="$("$@" 2>"$work/.stderr")" || rc=$?
  [[ "$rc" == "$want" ]] || fail "'$*' exited $rc, expected $want: $(tail -n 3 "$work/.stderr")"
}

expect 0 dsroll --version
[[ "$out" =~ ^dsroll\ [0-9] ]] || fail "dsroll --version printed '$out'"
expect 0 dsroll --help
[[ "$out" == *render* && "$out" == *rollout* ]] || fail "dsroll --help lists no commands"
expect 0 dsroll render --help
expect 0 dsroll render dev --check
expect 2 dsroll render no-such-environment

# --check reports drift and writes nothing.
victim="$(find rendered/dev -type f | head -n 1)"
rm "$victim"
expect 1 dsroll render dev --check
[[ ! -e "$victim" ]] || fail "render --check wrote $victim"
expect 0 dsroll render dev
[[ -e "$victim" ]] || fail "render did not write $victim"
expect 0 dsroll diff dev --against git:HEAD

expect 0 kubectl-dsroll --help
[[ "$out" == *"Usage: kubectl dsroll"* ]] || fail "kubectl-dsroll --help does not say 'kubectl dsroll'"
expect 0 kubectl-dsroll --version
expect 0 kubectl_complete-dsroll diff ""
[[ "$out" == *$'\ndev\nprod\n:4' || "$out" == $'dev\nprod\n:4' ]] || fail "completion of 'diff': '$out'"
expect 0 dsroll sandbox --help
echo "smoke: ok ($(dsroll --version))"
