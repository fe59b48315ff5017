#!/usr/bin/env bash
# `network:` of a job as a user writes it: the default (nat) fetches from
# the Debian archive, `network: none` has no interface and resolves
# nothing, both in one run (two VM shapes), and a mode that does not exist
# is refused at validation with the file, line and the modes there are.
set -u
. "$(dirname "$0")/lib.sh"

export NO_COLOR=1
repo=$E2E_TMP/repo out=$E2E_TMP/out
new_repo "$repo" || exit 1

cat >.vmci.yml <<'YML'
jobs:
  online:
    image: busybox-x86_64
    steps:
      - run: |
          wget -O - http://deb.debian.org/debian/dists/bookworm/Release 2>/dev/null | grep '^Origin:' | sed 's/^/fetched /'
  hermetic:
    image: busybox-x86_64
    network: none
    steps:
      - run: |
          echo "interfaces: $(ls /sys/class/net | tr '\n' ' ')"
          nslookup deb.debian.org >/dev/null 2>&1 && echo resolved || echo "cannot resolve"
          wget -O - http://deb.debian.org/ >/dev/null 2>&1 && echo connected || echo "cannot connect"
YML
git add -A && git commit -qm init

"$VMCI" run --logs -j 2 >"$out" 2>&1
rc=$?
expect_eq "a run with a nat job and a hermetic job passes" 0 "$rc"
if grep -q 'fetched Origin: Debian' "$out"; then
	pass "a nat job fetches from the Debian archive"
else
	fail "a nat job fetches from the Debian archive" "$(tail -c 1500 "$out")"
fi
if grep -q 'interfaces: lo $' "$out" && grep -q 'cannot resolve' "$out" &&
	grep -q 'cannot connect' "$out" && ! grep -qx '.*\(resolved\|connected\)$' "$out"; then
	pass "a job with network: none has only loopback and reaches nothing"
else
	fail "a job with network: none has only loopback and reaches nothing" "$(tail -c 1500 "$out")"
fi

cat >.vmci.yml <<'YML'
jobs:
  a:
    image: busybox-x86_64
    network: host
    steps:
      - run: true
YML
"$VMCI" validate >"$out" 2>&1
rc=$?
expect_eq "an unknown network mode fails validation (status 2: the pipeline is wrong)" 2 "$rc"
if grep -qF ".vmci.yml:4:14: error: network of job 'a' is 'host'; it must be 'nat'" "$out"; then
	pass "the error names the file, line, job and the modes there are"
else
	fail "the error names the file, line, job and the modes there are" "$(cat "$out")"
fi

# ---- vmci vm run and vmci shell: no network unless --network nat ------------------------
probe='echo "interfaces: $(ls /sys/class/net | tr "\n" " ")"; nslookup deb.debian.org >/dev/null 2>&1 && echo resolved || echo "cannot resolve"'
start=$(date +%s)
"$VMCI" vm run busybox-x86_64 -- sh -c "$probe" >"$out" 2>&1
if grep -q 'interfaces: lo $' "$out" && grep -q 'cannot resolve' "$out"; then
	pass "vm run gives the VM no network by default"
else
	fail "vm run gives the VM no network by default" "$(tail -c 1500 "$out")"
fi
"$VMCI" vm run --network nat busybox-x86_64 -- sh -c "$probe" >"$out" 2>&1
if grep -q 'interfaces: eth0 lo $' "$out" && grep -qx 'resolved' "$out"; then
	pass "vm run --network nat gives the VM an interface that resolves names"
else
	fail "vm run --network nat gives the VM an interface that resolves names" "$(tail -c 1500 "$out")"
fi
"$VMCI" shell --network nat busybox-x86_64 -- sh -c "$probe" </dev/null >"$out" 2>&1
if grep -q 'interfaces: eth0 lo' "$out" && grep -q 'resolved' "$out"; then
	pass "shell --network nat gives the VM an interface that resolves names"
else
	fail "shell --network nat gives the VM an interface that resolves names" "$(tail -c 1500 "$out")"
fi
echo "# vm run and shell with and without --network: $(( $(date +%s) - start ))s"
"$VMCI" vm run --network bridge busybox-x86_64 -- true >"$out" 2>&1
rc=$?
if [ "$rc" = 2 ] && grep -qF -- "--network takes nat or none, not 'bridge'" "$out"; then
	pass "vm run refuses a network mode that does not exist"
else
	fail "vm run refuses a network mode that does not exist" "rc=$rc: $(cat "$out")"
fi
