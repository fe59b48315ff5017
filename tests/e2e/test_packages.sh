#!/usr/bin/env bash
# `packages:` as a user writes it: a debian-12 job that needs autoconf,
# automake and libtool builds and checks a small autotools project (no
# libtool library: its configure checks would take minutes under TCG;
# libtoolize shows the package is there). The
# first run installs the packages once into a derived image (shown by
# `vmci image ls` with its parent); the second run installs nothing and
# starts from the same image. A package apt does not know fails the run
# with apt's own message, naming the job. The base is debian-12's disk
# imported into a store of the test's own, so that the first run builds
# the derived image every time.
set -u
. "$(dirname "$0")/lib.sh"

"$VMCI" image build debian-12 >/dev/null 2>&1
base_disk=$("$VMCI" image inspect debian-12 2>/dev/null | python3 -c '
import json, sys
print([f["path"] for f in json.load(sys.stdin)["files"] if f["name"] == "disk.qcow2"][0])')
real_home=${VMCI_HOME:-$HOME/.cache/vmci}
export VMCI_HOME=$E2E_TMP/home
mkdir -p "$VMCI_HOME"
[ -d "$real_home/cache" ] && ln -s "$real_home/cache" "$VMCI_HOME/cache"
[ -f "$real_home/accel.json" ] && cp "$real_home/accel.json" "$VMCI_HOME/accel.json"
"$VMCI" image import deb12 "$base_disk" >"$E2E_TMP/import" 2>&1
expect_eq "debian-12's disk imports as the base image" 0 "$?"

export NO_COLOR=1
repo=$E2E_TMP/repo out=$E2E_TMP/out
mkdir -p "$repo" && cd "$repo" || exit 1
git init -q . && git config user.email t@example.org && git config user.name test

cat >configure.ac <<'EOF2'
AC_INIT([greet], [1.0])
AM_INIT_AUTOMAKE([foreign])
AC_PROG_CC
AC_CONFIG_FILES([Makefile])
AC_OUTPUT
EOF2
cat >Makefile.am <<'EOF2'
check_PROGRAMS = test_greet
test_greet_SOURCES = test_greet.c greet.c
TESTS = test_greet
EOF2
cat >greet.c <<'EOF2'
#include <string.h>
const char *greet(void) { return "hello"; }
EOF2
cat >test_greet.c <<'EOF2'
#include <string.h>
const char *greet(void);
int main(void) { return strcmp(greet(), "hello") != 0; }
EOF2
cat >.vmci.yml <<'YML'
jobs:
  check:
    image: deb12
    packages: [libtool, autoconf, automake]
    resources: {memory: 1G}
    steps:
      - run: libtoolize --version | head -1
      - run: autoreconf -i && ./configure -q && make -s check
YML
git add -A && git commit -qm init

derived() { "$VMCI" image ls 2>/dev/null | awk '$1 ~ /^deb12\.pkgs-/ {print $1, $3, $NF}'; }

start=$(date +%s)
"$VMCI" run --logs >"$out" 2>&1
rc=$? first=$(( $(date +%s) - start ))
expect_eq "the first run passes: autoreconf, configure and make check with the job's packages" 0 "$rc"
if grep -q 'PASS: test_greet' "$out" && grep -q 'libtoolize (GNU libtool)' "$out"; then pass "make check ran the project's test"
else fail "make check ran the project's test" "$(tail -c 2000 "$out")"; fi
if grep -q 'deb12\.pkgs-[0-9a-f]*: installing packages' "$out"; then pass "the first run installs the packages"
else fail "the first run installs the packages" "$(head -c 2000 "$out")"; fi
image=$(derived)
case $image in
"deb12.pkgs-"*" sha256:"*" deb12@sha256:"*) pass "vmci image ls shows the derived image with its parent" ;;
*) fail "vmci image ls shows the derived image with its parent" "$("$VMCI" image ls 2>&1)" ;;
esac

start=$(date +%s)
"$VMCI" run --logs >"$out" 2>&1
rc=$? second=$(( $(date +%s) - start ))
expect_eq "the second run passes" 0 "$rc"
if ! grep -q 'installing packages\|running setup commands\|apt-get' "$out"; then pass "the second run installs nothing"
else fail "the second run installs nothing" "$(grep 'installing packages\|running setup commands\|apt-get' "$out" | head -3)"; fi
expect_eq "the second run starts from the same derived image" "$image" "$(derived)"
echo "# first run ${first}s (derived image built), second run ${second}s (reused)"

cat >.vmci.yml <<'YML'
jobs:
  broken:
    image: deb12
    packages: [autoconf, no-such-package-vmci]
    steps:
      - run: true
YML
"$VMCI" run --logs >"$out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && grep -q "job 'broken'" "$out" && grep -q 'Unable to locate package no-such-package-vmci' "$out"; then
	pass "an unknown package fails the run with apt's message, naming the job"
else
	fail "an unknown package fails the run with apt's message, naming the job" "rc=$rc: $(tail -c 1500 "$out")"
fi
