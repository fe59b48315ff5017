#!/usr/bin/env bash
# A workspace reaches the guest the same by both paths, the tar stream
# and the disk (vmci run --workspace tar|disk): 1,000 files with various
# modes in a directory tree, relative, absolute and dangling symlinks and
# a 300 MB file give the same manifest (path, type, mode, size, SHA-256,
# link target) on the host and in the guest, all root's. And a pool VM
# that ran a job on the disk path reverts cleanly: the next job in it
# sees no leftover disk and none of the files the first job wrote.
set -u
. "$(dirname "$0")/lib.sh"

export NO_COLOR=1
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
export TMPDIR=$E2E_TMP/tmp
repo=$E2E_TMP/repo
mkdir -p "$TMPDIR" "$repo" && cd "$repo" || exit 1
git init -q .

# ---- the tree ---------------------------------------------------------------
modes=(644 755 600 640 444 700 664 750)
n=0
for d in 0 1 2 3 4 5 6 7 8 9; do
	for s in a b c d e; do
		mkdir -p "src/d$d/$s"
		for f in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19; do
			p=src/d$d/$s/f$f.c
			echo "file $n in $d/$s" >"$p"
			chmod "${modes[$((n % 8))]}" "$p"
			n=$((n + 1))
		done
	done
done
chmod 700 src/d3
chmod 750 src/d4/b
ln -s ../d1/a/f1.c src/d0/rel-link          # relative, to a file
ln -s ../../d2 src/d0/a/dir-link             # relative, to a directory
ln -s does/not/exist src/dangling-relative   # dangling
ln -s /nowhere/at/all src/dangling-absolute  # dangling, absolute
ln -s /etc/hostname src/absolute             # absolute, outside the workspace
: >src/empty
head -c 300M /dev/urandom >big.bin
cp "$fixtures/workspace/manifest.sh" manifest.sh

cat >.vmci.yml <<'YAML'
jobs:
  manifest:
    image: busybox-x86_64
    resources: {memory: 1G}     # the tar path unpacks 300 MB into the guest's RAM
    steps:
      - run: |
          echo MANIFEST-BEGIN
          sh manifest.sh
          echo "not root's: $(find . ! -user 0 -o ! -group 0 | wc -l)"
          echo MANIFEST-END
          echo leftover >leftover-file
          mkdir -p /root && echo leftover >/root/leftover-file
  after:
    image: busybox-x86_64
    resources: {memory: 1G}
    needs: [manifest]
    steps:
      - run: |
          echo "leftovers: $(ls leftover-file /root/leftover-file 2>/dev/null | wc -l)"
          echo "disks: $(ls /sys/block | grep -c '^sd')"
          echo "mounts: $(grep -c ' /work/src ' /proc/mounts)"
YAML

sh manifest.sh >"$E2E_TMP/host.manifest"
echo "not root's: 0" >>"$E2E_TMP/host.manifest"
files=$(find . -path ./.git -prune -o ! -type d -print | wc -l)
expect_eq workspace_fixture_has_over_1000_entries yes "$([ "$files" -ge 1000 ] && echo yes)"

# The manifest a run's job printed, from its log.
guest_manifest() {
	sed -n '/^MANIFEST-BEGIN$/,/^MANIFEST-END$/p' .vmci/runs/latest/logs/manifest.log |
		sed '1d;$d'
}

# ---- both paths at once: the tar stream in a copy of the tree, the disk here ----
# The disk run has two jobs on one VM (-j 1): the second runs in the first's VM
# once it is reverted.
cp -a "$repo" "$E2E_TMP/tar-repo"
(cd "$E2E_TMP/tar-repo" && "$VMCI" run --workspace tar manifest >"$E2E_TMP/tar.out" 2>&1
 echo $? >"$E2E_TMP/tar.rc") &
tar_pid=$!
"$VMCI" run --workspace disk -j 1 >"$E2E_TMP/disk.out" 2>&1
disk_rc=$?
wait "$tar_pid"

expect_eq workspace_tar_run_passes 0 "$(cat "$E2E_TMP/tar.rc")"
(cd "$E2E_TMP/tar-repo" && guest_manifest) >"$E2E_TMP/tar.manifest"
if grep -q 'workspace: .* as a tar stream' "$E2E_TMP/tar-repo/.vmci/runs/latest/logs/manifest.log" &&
	diff "$E2E_TMP/host.manifest" "$E2E_TMP/tar.manifest" >"$E2E_TMP/tar.diff"; then
	pass workspace_by_tar_arrives_identical
else
	fail workspace_by_tar_arrives_identical "$(head -c 600 "$E2E_TMP/tar.diff"; tail -3 "$E2E_TMP/tar.out")"
fi

expect_eq workspace_disk_run_passes 0 "$disk_rc"
guest_manifest >"$E2E_TMP/disk.manifest"
if grep -q 'workspace: .* as a disk' .vmci/runs/latest/logs/manifest.log &&
	diff "$E2E_TMP/host.manifest" "$E2E_TMP/disk.manifest" >"$E2E_TMP/disk.diff"; then
	pass workspace_by_disk_arrives_identical
else
	fail workspace_by_disk_arrives_identical "$(head -c 600 "$E2E_TMP/disk.diff"; tail -3 "$E2E_TMP/disk.out")"
fi
after=.vmci/runs/latest/logs/after.log
if grep -q 'out of the pool' "$E2E_TMP/disk.out"; then
	fail pool_vm_reverts_after_a_disk_job "$(grep 'out of the pool' "$E2E_TMP/disk.out")"
else
	pass pool_vm_reverts_after_a_disk_job
fi
expect_eq next_job_sees_no_files_of_the_disk_job "leftovers: 0" "$(grep '^leftovers:' "$after")"
expect_eq next_job_sees_only_its_own_disk "disks: 1" "$(grep '^disks:' "$after")"
expect_eq next_job_has_its_workspace_mounted_once "mounts: 1" "$(grep '^mounts:' "$after")"
if ls -d "$TMPDIR"/vmci-ws-* >/dev/null 2>&1; then
	fail workspace_disk_image_removed_after_the_run "$(ls -d "$TMPDIR"/vmci-ws-*)"
else
	pass workspace_disk_image_removed_after_the_run
fi

# ---- a second Ctrl-C: the process ends at once, and takes its directories along ----
# The first Ctrl-C starts the teardown (cancel the job, stop its VM, free the
# workspace); a second one ends vmci in the middle of it. Neither the
# workspace disk's directory nor the VM's may stay behind.
export TMPDIR=$E2E_TMP/tmp-ctrl-c
mkdir -p "$TMPDIR"
new_repo "$E2E_TMP/ctrl-c-repo"
cd "$E2E_TMP/ctrl-c-repo" || exit 1
cat >.vmci.yml <<'YAML'
jobs:
  sleeper:
    image: busybox-x86_64
    steps:
      - run: echo started; sleep 300
YAML
git add .vmci.yml && git commit -qm sleeper
out=$E2E_TMP/ctrl-c.out
"$VMCI" run --workspace disk --logs >"$out" 2>&1 &
vmci_pid=$!
for _ in $(seq 1 1200); do
	grep -q '] started' "$out" && break
	kill -0 "$vmci_pid" 2>/dev/null || break
	sleep 0.1
done
seen_ws=$(ls -d "$TMPDIR"/vmci-ws-* 2>/dev/null | wc -l)
kill -INT "$vmci_pid"
# The second one goes as soon as the first was taken, while the job's VM is still stopping.
for _ in $(seq 1 500); do
	grep -q 'cancelling: stopping' "$out" && break
	sleep 0.01
done
kill -INT "$vmci_pid"
wait "$vmci_pid"
rc=$?
expect_eq second_ctrl_c_ran_on_a_disk_workspace 1 "$seen_ws"
expect_eq second_ctrl_c_exits_130 130 "$rc"
# Not the first Ctrl-C's teardown finishing first: the second one ended vmci.
if grep -q '^vmci: killed' "$out"; then
	pass second_ctrl_c_kills_vmci_mid_teardown
else
	fail second_ctrl_c_kills_vmci_mid_teardown "$(tail -5 "$out")"
fi
if ls -d "$TMPDIR"/vmci-ws-* >/dev/null 2>&1; then
	fail second_ctrl_c_leaves_no_workspace_disk_behind "$(ls -d "$TMPDIR"/vmci-ws-*)"
else
	pass second_ctrl_c_leaves_no_workspace_disk_behind
fi
if ls -d "$TMPDIR"/vmci-vm-* >/dev/null 2>&1; then
	fail second_ctrl_c_leaves_no_vm_directory_behind "$(ls -d "$TMPDIR"/vmci-vm-*)"
else
	pass second_ctrl_c_leaves_no_vm_directory_behind
fi
