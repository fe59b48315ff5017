# Helpers for end-to-end tests: they drive the vmci binary as a user would
# and print TAP lines ("ok NAME" / "not ok NAME") that tests/run-tests counts.

VMCI=${VMCI_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/vmci}
E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmci-e2e.XXXXXX")
trap 'rm -rf "$E2E_TMP"' EXIT

# pass NAME / fail NAME WHY / skip NAME WHY
pass() { echo "ok $1"; }
fail() { echo "not ok $1: $2"; }
skip() { echo "ok $1 # SKIP $2"; } # counted as skipped, not passed

# new_repo DIR: an empty git repository at DIR, with a committer, as the current directory
new_repo() {
	mkdir -p "$1" && cd "$1" && git init -q . && git config user.email t@example.org &&
		git config user.name test
}

# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}
