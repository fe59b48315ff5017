#!/usr/bin/env bash
# `packages:` as a user writes it, in three runs that cost as little as
# they can under TCG.
#
# 1. A debian-12 job that needs autoconf, automake and libtool builds and
#    checks a small autotools project (no libtool library: its configure
#    checks would take minutes under TCG; libtoolize shows the package is
#    there). It runs against the user's own image store, as the other
#    tests do, so the derived image for that list is built the first time
#    and kept: later runs (and CI) start from it until debian-12 changes.
# 2. Build once, reuse after, every time: debian-12's disk imported as an
#    image of a store of the test's own, so the derived image is always
#    new; one small package (hello: nothing it depends on is missing from
#    the base). The first run installs it into a derived image (shown by
#    `vmci image ls` with its parent), leaving its manual pages out; the
#    second installs nothing and starts from the same image.
# 3. A package apt does not know fails the run with apt's own message,
#    naming the job (in the test's store too).
set -u
. "$(dirname "$0")/lib.sh"

export NO_COLOR=1
out=$E2E_TMP/out

# Makes a git repository in $1 with the files already there.
commit_repo() {
	(cd "$1" && git init -q . && git config user.email t@example.org &&
		git config user.name test && git add -A && git commit -qm init)
}
# The derived images of base $1 in `vmci image ls`: name, digest, parent.
derived() {
	"$VMCI" image ls --json 2>/dev/null | jq -r --arg p "$1.pkgs-" \
		'.[] | select(.name // "" | startswith($p)) | "\(.name) \(.digest) \(.parent.name)@\(.parent.digest)"'
}
# The name a package list (one a line, sorted) gives its image on base $1.
derived_name() { printf '%s.pkgs-%s' "$1" "$(sha256sum | cut -c1-12)"; }

# ---- 1. an autotools project, in the user's store --------------------------
"$VMCI" image build debian-12 >/dev/null 2>&1
proj=$E2E_TMP/proj
mkdir -p "$proj"
cat >"$proj/configure.ac" <<'EOF2'
AC_INIT([greet], [1.0])
AM_INIT_AUTOMAKE([foreign])
AC_PROG_CC
AC_CONFIG_FILES([Makefile])
AC_OUTPUT
EOF2
cat >"$proj/Makefile.am" <<'EOF2'
check_PROGRAMS = test_greet
test_greet_SOURCES = test_greet.c greet.c
TESTS = test_greet
EOF2
cat >"$proj/greet.c" <<'EOF2'
#include <string.h>
const char *greet(void) { return "hello"; }
EOF2
cat >"$proj/test_greet.c" <<'EOF2'
#include <string.h>
const char *greet(void);
int main(void) { return strcmp(greet(), "hello") != 0; }
EOF2
cat >"$proj/.vmci.yml" <<'YML'
jobs:
  check:
    image: debian-12
    packages: [libtool, autoconf, automake]
    resources: {memory: 1G}
    steps:
      - run: libtoolize --version | head -1 && autoreconf -i && ./configure -q && make -s check
YML
commit_repo "$proj"

start=$(date +%s)
(cd "$proj" && "$VMCI" run --logs) >"$out" 2>&1
rc=$? took=$(( $(date +%s) - start ))
expect_eq "a job with packages: [autoconf, automake, libtool] runs autoreconf, configure and make check" 0 "$rc"
if grep -q 'PASS: test_greet' "$out" && grep -q 'libtoolize (GNU libtool)' "$out"; then pass "make check ran the project's test"
else fail "make check ran the project's test" "$(tail -c 2000 "$out")"; fi
name=$(printf 'autoconf\nautomake\nlibtool\n' | derived_name debian-12)
case $(derived debian-12 | grep "^$name ") in
"$name sha256:"*" debian-12@sha256:"*) pass "vmci image ls shows the derived image with its parent" ;;
*) fail "vmci image ls shows the derived image with its parent" "no $name in: $("$VMCI" image ls 2>&1)" ;;
esac
if grep -q "$name: installing packages" "$out"; then built="derived image built"; else built="derived image kept from before"; fi
echo "# autotools run ${took}s ($built)"

# ---- 2. built once, then reused: a store of the test's own -----------------
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

repo=$E2E_TMP/repo
mkdir -p "$repo"
cat >"$repo/.vmci.yml" <<'YML'
jobs:
  greet:
    image: deb12
    packages: [hello]
    steps:
      - run: hello
      - run: |
          test -f /usr/share/doc/hello/copyright &&
          ! test -e /usr/share/man/man1/hello.1.gz &&
          ! test -e /usr/share/info/hello.info.gz && echo "no manuals, copyright kept"
YML
commit_repo "$repo"
cd "$repo" || exit 1

start=$(date +%s)
"$VMCI" run --logs >"$out" 2>&1
rc=$? first=$(( $(date +%s) - start ))
expect_eq "the first run passes" 0 "$rc"
if grep -q 'Hello, world!' "$out"; then pass "the job runs the installed package"
else fail "the job runs the installed package" "$(tail -c 2000 "$out")"; fi
if grep -q 'no manuals, copyright kept' "$out"; then pass "the package is installed without its manuals, with its copyright notice"
else fail "the package is installed without its manuals, with its copyright notice" "$(tail -c 2000 "$out")"; fi
if grep -q 'deb12\.pkgs-[0-9a-f]*: installing packages' "$out"; then pass "the first run installs the packages"
else fail "the first run installs the packages" "$(head -c 2000 "$out")"; fi
image=$(derived deb12)
name=$(echo hello | derived_name deb12)
case $image in
"$name sha256:"*" deb12@sha256:"*) pass "vmci image ls shows the new derived image with its parent" ;;
*) fail "vmci image ls shows the new derived image with its parent" "$("$VMCI" image ls 2>&1)" ;;
esac

start=$(date +%s)
"$VMCI" run --logs >"$out" 2>&1
rc=$? second=$(( $(date +%s) - start ))
expect_eq "the second run passes" 0 "$rc"
if ! grep -q 'installing packages\|running setup commands\|apt-get' "$out"; then pass "the second run installs nothing"
else fail "the second run installs nothing" "$(grep 'installing packages\|running setup commands\|apt-get' "$out" | head -3)"; fi
expect_eq "the second run starts from the same derived image" "$image" "$(derived deb12)"
echo "# first run ${first}s (derived image built), second run ${second}s (reused)"

# ---- 2b. recipes with a base: the image the job's packages made ----------------
# A recipe naming deb12 and [hello] is the image the runs above derived (one
# content address), so building it installs nothing: it is a second name.
# One that also has setup commands runs them on that image, in its own.
recipes=$E2E_TMP/recipes
mkdir -p "$recipes"
printf 'name: deb12-hello\nbase: deb12\npackages: [hello]\n' >"$recipes/deb12-hello.yml"
printf 'name: deb12-greeting\nbase: deb12\npackages: [hello]\nsetup: [hello >/etc/greeting]\n' \
	>"$recipes/deb12-greeting.yml"
start=$(date +%s)
VMCI_RECIPES_DIR=$recipes "$VMCI" image build deb12-hello >"$out" 2>&1
rc=$? took=$(( $(date +%s) - start ))
expect_eq "a recipe with a base and packages builds" 0 "$rc"
if ! grep -q 'installing packages' "$out"; then pass "the recipe's image is the job's derived image: nothing is installed again"
else fail "the recipe's image is the job's derived image: nothing is installed again" "$(tail -c 1500 "$out")"; fi
ls_row() { "$VMCI" image ls --json 2>/dev/null | jq -r --arg n "$1" '.[] | select(.name == $n) | "\(.digest) \(.parent.name)@\(.parent.digest)"'; }
expect_eq "vmci image ls shows the recipe's image with the derived image's digest and parent" \
	"$(echo "$image" | cut -d' ' -f2-)" "$(ls_row deb12-hello)"
VMCI_RECIPES_DIR=$recipes "$VMCI" image build deb12-greeting >"$out" 2>&1
expect_eq "a recipe with a base, packages and setup commands builds" 0 "$?"
if ! grep -q 'installing packages' "$out"; then pass "its packages come from the shared derived image"
else fail "its packages come from the shared derived image" "$(tail -c 1500 "$out")"; fi
case $(ls_row deb12-greeting) in
"sha256:"*" $name@$(echo "$image" | cut -d' ' -f2)") pass "vmci image ls shows the derived image as its parent" ;;
*) fail "vmci image ls shows the derived image as its parent" "$(ls_row deb12-greeting), want parent $name" ;;
esac
VMCI_RECIPES_DIR=$recipes "$VMCI" vm run deb12-greeting -- cat /etc/greeting >"$out" 2>&1
if grep -q 'Hello, world!' "$out"; then pass "a VM of it has what the setup commands made with the package"
else fail "a VM of it has what the setup commands made with the package" "$(tail -c 1500 "$out")"; fi
echo "# recipes with a base: packages only ${took}s, with setup commands and a VM $(( $(date +%s) - start - took ))s"

# ---- 2c. setup commands have network only when the recipe asks ----------------
# A recipe on debian-12's disk whose setup resolves a name with network: nat
# builds; the same command on deb12 without (the default: hermetic) fails
# and says which command.
cat >"$recipes/deb12-online.yml" <<YML
name: deb12-online
arch: x86_64
kernel:
  debian: cloud
  modules: [virtio_pci, virtio_console, virtio_blk, virtio_scsi, sd_mod, virtio_rng, virtio_net, ext4]
busybox: /bin/busybox
rootfs: {disk: $base_disk}
setup:
  - getent hosts deb.debian.org
network: nat
YML
printf 'name: deb12-offline\nbase: deb12\nsetup: [getent hosts deb.debian.org]\n' >"$recipes/deb12-offline.yml"
start=$(date +%s)
VMCI_RECIPES_DIR=$recipes "$VMCI" image build deb12-online >"$out" 2>&1
rc=$?
if [ "$rc" = 0 ]; then pass "setup commands of a recipe with network: nat reach the network"
else fail "setup commands of a recipe with network: nat reach the network" "rc=$rc: $(tail -c 1500 "$out")"; fi
VMCI_RECIPES_DIR=$recipes "$VMCI" image build deb12-offline >"$out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && grep -q 'setup of image deb12-offline' "$out" && grep -qF 'getent hosts deb.debian.org' "$out"; then
	pass "setup commands of a recipe without network have none"
else
	fail "setup commands of a recipe without network have none" "rc=$rc: $(tail -c 1500 "$out")"
fi
echo "# setup with and without network: $(( $(date +%s) - start ))s"

# ---- 3. a package apt does not know -------------------------------------------
cat >.vmci.yml <<'YML'
jobs:
  broken:
    image: deb12
    packages: [no-such-package-vmci]
    steps:
      - run: true
YML
git commit -qam broken
"$VMCI" run --logs >"$out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && grep -q "job 'broken'" "$out" && grep -q 'Unable to locate package no-such-package-vmci' "$out"; then
	pass "an unknown package fails the run with apt's message, naming the job"
else
	fail "an unknown package fails the run with apt's message, naming the job" "rc=$rc: $(tail -c 1500 "$out")"
fi
