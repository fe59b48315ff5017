#!/usr/bin/env bash
# A running job moves live from one vmci process to another on this
# machine (vmci run --move-to SOCKET, SIGUSR1; vmci vm receive --listen
# SOCKET): from a warm-pool VM (restored from a template), it ends in
# success with every line of its output once and in order, a file written
# before the move is there after, a 40 KiB step runs where the VM went,
# its artifacts land where a job's always do, the source keeps no QEMU and
# its pool replaces the VM for the next job. With the destination's QEMU
# killed mid-move (a cold VM), the job goes on at the source, succeeds,
# and says the move failed. Ctrl-C on the source during a move leaves no
# QEMU and no half-moved job; Ctrl-C on the receiver that took a job, or
# on the source once the job moved, ends the job cancelled, with no QEMU
# and no run directory left. A job whose workspace is a disk moves with
# it, its writes and files intact; to a receiver that cannot see the
# workspace's image (another host), the move is refused and the job goes
# on at the source.
set -u
. "$(dirname "$0")/lib.sh"

export NO_COLOR=1
repo=$E2E_TMP/repo
new_repo "$repo" || exit 1
cat >.vmci.yml <<'EOF'
jobs:
  count:
    image: busybox-x86_64
    steps:
      - name: count
        run: |
          echo written-early > /root/early
          mkdir -p out && echo "written before the move" > out/early.txt
          i=0
          while [ $i -lt 200 ]; do i=$((i+1)); echo "tick $i"; sleep 0.1; done
          echo "early file: $(cat /root/early)"
      - name: after
        run: |
          echo "second step ran"
          mkdir -p out && echo "written after the move" > out/late.txt
      - name: long
        run: |
EOF
# A step of about 40 KiB: over what one exec request carries, so it travels as a file.
for i in $(seq 560); do
	echo "          : padding line $i of a long step script, to make it about forty KiB"
done >>.vmci.yml
cat >>.vmci.yml <<'EOF'
          echo "the long step ran"
    artifacts:
      - out/
  later:
    image: busybox-x86_64
    needs: [count]
    steps:
      - run: echo "the next job got a VM"
EOF
git add -A && git commit -qm init

# wait_for FILE TEXT: up to 60 s for TEXT to appear in FILE
wait_for() {
	for _ in $(seq 600); do
		grep -qF -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
# ticks_in_order LOG: every "tick N" from 1 to 200 exactly once, in order
ticks_in_order() {
	grep -o 'tick [0-9]*' "$1" | awk '$2 != NR { bad = 1 } END { exit !(NR == 200 && !bad) }'
}
# ticks_problem LOG: where the ticks first go wrong
ticks_problem() {
	grep -o 'tick [0-9]*' "$1" | awk '$2 != NR && !seen { print "line " NR " is tick " $2; seen = 1 }
		END { print NR " ticks in all" }' | tr '\n' ' '
}
qemus_of() { pgrep -P "$1" qemu-system 2>/dev/null | wc -l; }
# start_move SUFFIX [RUN OPTION...]: a receiver on $E2E_TMP/receiveSUFFIX.sock
# (pid rpid, output recvSUFFIX.out) and the pipeline run with --move-to it, one
# VM at a time (pid vpid, output runSUFFIX.out); succeeds once the job has
# printed tick 30
start_move() {
	local sock=$E2E_TMP/receive$1.sock suffix=$1
	shift
	"$VMCI" vm receive --listen "$sock" >"$E2E_TMP/recv$suffix.out" 2>&1 &
	rpid=$!
	wait_for "$E2E_TMP/recv$suffix.out" "waiting for a VM"
	"$VMCI" run -j 1 --logs --move-to "$sock" "$@" >"$E2E_TMP/run$suffix.out" 2>&1 &
	vpid=$!
	wait_for "$E2E_TMP/run$suffix.out" "tick 30"
}
# run_dirs: the VMs' run directories left in TMPDIR
run_dirs() { ls -d "${TMPDIR:-/tmp}"/vmci-vm-* 2>/dev/null | wc -l; }
# qemus_under_tmp: QEMUs running from a run directory in TMPDIR
qemus_under_tmp() { pgrep -f "qemu-system.*${TMPDIR:-/tmp}/vmci-vm-" 2>/dev/null | wc -l; }

# ---- the move --------------------------------------------------------------------

sock=$E2E_TMP/receive.sock
if start_move ""; then
	kill -USR1 "$vpid"
	wait_for "$E2E_TMP/run.out" "the job goes on there"
	sleep 0.5
	expect_eq "the source keeps no QEMU once the job moved" 0 "$(qemus_of "$vpid")"
	expect_eq "the receiver runs the moved VM" 1 "$(qemus_of "$rpid")"
else
	fail "the job started" "$(tail -5 "$E2E_TMP/run.out")"
fi
wait "$vpid"
expect_eq "the moved job ends in success" 0 $?
wait "$rpid"
expect_eq "the receiver ends cleanly with the job" 0 $?
log=.vmci/runs/latest/logs/count.log
if ticks_in_order "$log"; then pass "every line of the moved job is in its log once, in order"
else fail "every line of the moved job is in its log once, in order" "$(ticks_problem "$log")"; fi
if grep -q "early file: written-early" "$log"; then pass "a file written before the move is there after"
else fail "a file written before the move is there after" "$(tail -3 "$log")"; fi
if grep -q "second step ran" "$log"; then pass "the steps after the move run where the VM went"
else fail "the steps after the move run where the VM went" "$(tail -3 "$log")"; fi
if grep -q "the long step ran" "$log"; then pass "a 40 KiB step runs in the VM that moved"
else fail "a 40 KiB step runs in the VM that moved" "$(grep -i long "$log" | tail -3)"; fi
art=.vmci/runs/latest/artifacts/count/out
if [ "$(cat "$art/early.txt" "$art/late.txt" 2>/dev/null)" = "$(printf 'written before the move\nwritten after the move')" ]
then pass "a moved job's artifacts land where a job's artifacts do"
else fail "a moved job's artifacts land where a job's artifacts do" "$(ls -R .vmci/runs/latest/artifacts 2>&1 | tr '\n' ' ')"; fi
if grep -q "the next job got a VM" .vmci/runs/latest/logs/later.log 2>/dev/null
then pass "the source's pool replaces the VM that moved away"
else fail "the source's pool replaces the VM that moved away" "$(tail -3 "$E2E_TMP/run.out")"; fi
grep -iE "mov|receiv" "$E2E_TMP/run.out" "$E2E_TMP/recv.out" | sed 's/^/# /'
if grep -q "moved to $sock" "$E2E_TMP/run.out"; then pass "vmci run says where the job went"
else fail "vmci run says where the job went" "$(grep -i mov "$E2E_TMP/run.out" | head -3)"; fi

# ---- the destination killed mid-move ----------------------------------------------

if start_move 2 --cold; then
	kill -USR1 "$vpid"
	# The destination's QEMU as soon as it waits for the migration (its run
	# directory holds migrate.sock): the move is under way.
	q=""
	for _ in $(seq 1000); do
		if ls "${TMPDIR:-/tmp}"/vmci-vm-*/migrate.sock >/dev/null 2>&1; then
			q=$(pgrep -P "$rpid" qemu-system) && break
		fi
		sleep 0.01
	done
	[ -n "$q" ] && kill -9 $q
fi
wait "$vpid"
expect_eq "a job whose destination died goes on and succeeds" 0 $?
wait "$rpid"
expect_eq "the receiver that lost its VM says so in its status" 125 $?
log=.vmci/runs/latest/logs/count.log
if ticks_in_order "$log"; then pass "the job that stayed lost and repeated no line"
else fail "the job that stayed lost and repeated no line" "$(ticks_problem "$log")"; fi
grep -iE "mov|receiv" "$E2E_TMP/run2.out" "$E2E_TMP/recv2.out" | sed 's/^/# /'
if grep -q "the move failed, the job goes on here" "$E2E_TMP/run2.out"; then pass "vmci run says the move failed and why"
else fail "vmci run says the move failed and why" "$(grep -i mov "$E2E_TMP/run2.out" | head -3)"; fi

# ---- Ctrl-C on the source during a move ----------------------------------------------

if start_move 3; then
	kill -USR1 "$vpid"
	# The receiver took the offer and prepares its destination: the move is under way.
	wait_for "$E2E_TMP/recv3.out" "receiving a VM"
	kill -INT "$vpid"
fi
t0=$(date +%s)
wait "$vpid"
expect_eq "Ctrl-C on the source during a move ends vmci run as cancelled" 130 $?
# The step had over 10 s left (ticks up to 200, 0.1 s apart): it ends cancelled, not run out.
took=$(($(date +%s) - t0))
if grep -q "step 'count' cancelled" "$E2E_TMP/run3.out" && [ "$took" -le 8 ]
then pass "Ctrl-C during a move cancels the step at once"
else fail "Ctrl-C during a move cancels the step at once" \
	"${took}s; $(grep -E "step '|cancel" "$E2E_TMP/run3.out" | head -3 | tr '\n' ' ')"; fi
wait "$rpid"
expect_eq "the receiver sees the move given up" 125 $?
grep -iE "mov|receiv|cancel" "$E2E_TMP/run3.out" "$E2E_TMP/recv3.out" | sed 's/^/# /'
expect_eq "no QEMU and no run directory are left after a move cancelled at the source" "0 0" \
	"$(qemus_under_tmp) $(run_dirs)"

# ---- Ctrl-C on the receiver that took a job ------------------------------------------

if start_move 4; then
	kill -USR1 "$vpid"
	wait_for "$E2E_TMP/run4.out" "the job goes on there"
	kill -INT "$rpid"
fi
wait "$rpid"
expect_eq "Ctrl-C on the receiver ends it as interrupted" 130 $?
wait "$vpid"
grep -iE "mov|receiv|cancel" "$E2E_TMP/run4.out" "$E2E_TMP/recv4.out" | sed 's/^/# /'
if grep -qE "count.*cancelled" "$E2E_TMP/run4.out"; then pass "the job the receiver took ends cancelled"
else fail "the job the receiver took ends cancelled" "$(tail -5 "$E2E_TMP/run4.out")"; fi
expect_eq "no QEMU and no run directory are left after the receiver was cancelled" "0 0" \
	"$(qemus_under_tmp) $(run_dirs)"

# ---- Ctrl-C on the source once its job moved ------------------------------------------

if start_move 5; then
	kill -USR1 "$vpid"
	wait_for "$E2E_TMP/run5.out" "the job goes on there"
	kill -INT "$vpid"
fi
wait "$vpid"
expect_eq "Ctrl-C on the source of a moved job ends vmci run as cancelled" 130 $?
wait "$rpid"
expect_eq "the receiver ends cleanly with the cancelled job" 0 $?
grep -iE "mov|receiv|cancel" "$E2E_TMP/run5.out" "$E2E_TMP/recv5.out" | sed 's/^/# /'
if grep -qE "step 'count' cancelled" "$E2E_TMP/run5.out"; then pass "Ctrl-C on the source reaches the command of the moved job"
else fail "Ctrl-C on the source reaches the command of the moved job" "$(tail -5 "$E2E_TMP/run5.out")"; fi
expect_eq "no QEMU and no run directory are left after a moved job was cancelled" "0 0" \
	"$(qemus_under_tmp) $(run_dirs)"

# ---- a job whose workspace is a disk ----------------------------------------------

# The workspace disk moves with the VM (its overlay, into the receiver's
# own over the same image): what the job wrote into its workspace before
# the move is there after, and the workspace's own files are intact.
wsrepo=$E2E_TMP/wsrepo
new_repo "$wsrepo" || exit 1
head -c 300000 /dev/urandom >data.bin
data_sum=$(sha256sum data.bin | cut -d' ' -f1)
cat >.vmci.yml <<'EOF'
jobs:
  ws:
    image: busybox-x86_64
    steps:
      - name: before
        run: |
          grep -q " $PWD " /proc/mounts && echo "workspace on a disk at $PWD"
          head -c 1000000 /dev/urandom >written.bin && sync
          sha256sum written.bin | cut -d' ' -f1 >written.sum
          i=0
          while [ $i -lt 60 ]; do i=$((i+1)); echo "tick $i"; sleep 0.1; done
      - name: after
        run: |
          # read from the receiver's disk, not from the page cache that moved with the memory
          sync && echo 3 > /proc/sys/vm/drop_caches
          [ "$(sha256sum written.bin | cut -d' ' -f1)" = "$(cat written.sum)" ] &&
            echo "written before the move: intact"
          echo "workspace file: $(sha256sum data.bin | cut -d' ' -f1)"
EOF
git add -A && git commit -qm ws
if start_move 6 --workspace disk; then
	kill -USR1 "$vpid"
	wait_for "$E2E_TMP/run6.out" "the job goes on"
fi
wait "$vpid"
ws_rc=$?
wait "$rpid"
expect_eq "the receiver of a job with a disk workspace ends cleanly" 0 $?
grep -iE "mov|receiv|workspace" "$E2E_TMP/run6.out" "$E2E_TMP/recv6.out" | sed 's/^/# /'
log=.vmci/runs/latest/logs/ws.log
if grep -q "workspace on a disk" "$log" && grep -q "moved to .*the job goes on there" "$E2E_TMP/run6.out"
then pass "a job whose workspace is a disk moves"
else fail "a job whose workspace is a disk moves" "$(grep -iE "mov|disk" "$E2E_TMP/run6.out" | head -3)"; fi
expect_eq "the moved job with a disk workspace ends in success" 0 "$ws_rc"
if grep -q "written before the move: intact" "$log"
then pass "what the job wrote into its workspace before the move is there after"
else fail "what the job wrote into its workspace before the move is there after" "$(tail -3 "$log")"; fi
if grep -q "workspace file: $data_sum" "$log"
then pass "a file of the workspace is intact after the move"
else fail "a file of the workspace is intact after the move" "$(grep "workspace file" "$log")"; fi
expect_eq "no QEMU, no run directory and no overlay are left after the move" "0 0 0" \
	"$(qemus_under_tmp) $(run_dirs) $(find "${TMPDIR:-/tmp}" -name '*.qcow2' 2>/dev/null | wc -l)"

# ---- a workspace disk the receiver cannot see ---------------------------------------

# A receiver on another host cannot see the run's image of the workspace:
# here, one whose view of the source's TMPDIR is an empty file system.
src_tmp=$E2E_TMP/srctmp
mkdir -p "$src_tmp"
ns=(unshare -m)
[ "$(id -u)" = 0 ] || ns=(unshare -rm)
sock=$E2E_TMP/receive7.sock
"${ns[@]}" sh -c 'mount -t tmpfs none "$1" && shift && exec "$@"' sh "$src_tmp" \
	"$VMCI" vm receive --listen "$sock" >"$E2E_TMP/recv7.out" 2>&1 &
rpid=$!
wait_for "$E2E_TMP/recv7.out" "waiting for a VM"
TMPDIR=$src_tmp "$VMCI" run -j 1 --logs --move-to "$sock" --workspace disk >"$E2E_TMP/run7.out" 2>&1 &
vpid=$!
wait_for "$E2E_TMP/run7.out" "tick 30" && kill -USR1 "$vpid"
wait "$vpid"
expect_eq "a job whose workspace disk the receiver cannot see goes on here and succeeds" 0 $?
wait "$rpid"
expect_eq "the receiver refuses a VM whose workspace disk it cannot see" 125 $?
grep -iE "mov|receiv" "$E2E_TMP/run7.out" "$E2E_TMP/recv7.out" | sed 's/^/# /'
if grep -q "the move failed, the job goes on here: .*workspace is a disk over .*not here" "$E2E_TMP/run7.out"
then pass "vmci run says the receiver cannot see the workspace disk"
else fail "vmci run says the receiver cannot see the workspace disk" "$(grep -i mov "$E2E_TMP/run7.out" | head -3)"; fi
expect_eq "no QEMU, no run directory and no overlay are left after the refused move" "0 0 0" \
	"$(pgrep -f "qemu-system.*$src_tmp/vmci-vm-" | wc -l) $(ls -d "$src_tmp"/vmci-vm-* 2>/dev/null | wc -l) $(find "${TMPDIR:-/tmp}" -name '*.qcow2' 2>/dev/null | wc -l)"
