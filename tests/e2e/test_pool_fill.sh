#!/usr/bin/env bash
# The warm pool of `vmci run` fills in parallel (two VMs starting before any
# job has one), and Ctrl-C in the middle of that fill stops every QEMU and
# removes every VM directory.
set -u
. "$(dirname "$0")/lib.sh"

export NO_COLOR=1
# VMs of this test only: their run directories and QEMU command lines are under here.
export TMPDIR=$E2E_TMP/tmp
mkdir -p "$TMPDIR" "$E2E_TMP/repo" && cd "$E2E_TMP/repo" || exit 1
git init -q .
out=$E2E_TMP/out

cat >.vmci.yml <<'YAML'
jobs:
  sleeper:
    image: busybox-x86_64
    strategy:
      matrix: {n: ["1", "2", "3", "4"]}
    steps:
      - run: echo started; sleep 300
YAML
# The template exists before the run (the jobs' shape: 1 GiB, network),
# so the fill is restores only.
"$VMCI" vm run --start template-snapshot --memory 1024 --network nat busybox-x86_64 -- true \
	>/dev/null 2>&1 ||
	{ fail pool_fill_template "cannot make the busybox-x86_64 template"; exit 0; }

qemus() { pgrep -f "qemu-system.*$TMPDIR/vmci-vm" | tr '\n' ' '; }
"$VMCI" run --logs -j 2 >"$out" 2>&1 &
vmci_pid=$!
parallel=no
for _ in $(seq 1 1200); do
	if [ "$(qemus | wc -w)" -ge 2 ]; then
		# Both QEMUs up and no job started yet: they were started together.
		grep -q '] started' "$out" || parallel=yes
		break
	fi
	alive=$(kill -0 "$vmci_pid" 2>/dev/null && echo y)
	[ -n "$alive" ] || break
	sleep 0.05
done
seen=$(qemus)
# Pool VMs start from the snapshot template (a copy of its disk, loaded as
# QEMU starts) and revert between jobs, reading all their memory: it is
# anonymous memory, not a private mapping of a template's file.
file_backed=$(pgrep -af "qemu-system.*$TMPDIR/vmci-vm" | grep -c 'memory-backend-file')
from_snapshot=$(pgrep -af "qemu-system.*$TMPDIR/vmci-vm" | grep -c -- '-loadvm clean')
kill -INT "$vmci_pid"
wait "$vmci_pid"
rc=$?
expect_eq pool_fill_starts_vms_in_parallel yes "$parallel"
expect_eq ctrl_c_during_pool_fill_exits_130 130 "$rc"
if [ -n "$seen" ] && [ "$file_backed" = 0 ]; then pass pool_vms_have_anonymous_memory
else fail pool_vms_have_anonymous_memory "qemus seen: '$seen', file-backed: $file_backed"; fi
if [ "$from_snapshot" -ge 2 ]; then pass pool_vms_start_from_the_snapshot_template
else fail pool_vms_start_from_the_snapshot_template "$from_snapshot of '$seen' with -loadvm clean"; fi
left=""
for _ in $(seq 1 50); do
	left=$(qemus)
	[ -z "$left" ] && break
	sleep 0.1
done
if [ -n "$seen" ] && [ -z "$left" ]; then pass ctrl_c_during_pool_fill_leaves_no_qemu_behind
else fail ctrl_c_during_pool_fill_leaves_no_qemu_behind "qemus seen: '$seen', still alive: '$left'"; fi
if ls -d "$TMPDIR"/vmci-vm-* >/dev/null 2>&1; then
	fail ctrl_c_during_pool_fill_leaves_no_vm_directory_behind "$(ls -d "$TMPDIR"/vmci-vm-*)"
else
	pass ctrl_c_during_pool_fill_leaves_no_vm_directory_behind
fi
