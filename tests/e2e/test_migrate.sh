#!/usr/bin/env bash
# A running job moves live from one vmci process to another on this
# machine (vmci run --move-to SOCKET, SIGUSR1; vmci vm receive --listen
# SOCKET): it ends in success with every line of its output once and in
# order, a file written before the move is there after, and the source
# keeps no QEMU. With the destination's QEMU killed mid-move, the job goes
# on at the source, succeeds, and says the move failed.
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
          i=0
          while [ $i -lt 200 ]; do i=$((i+1)); echo "tick $i"; sleep 0.1; done
          echo "early file: $(cat /root/early)"
      - name: after
        run: echo "second step ran"
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
# start_move SUFFIX: a receiver on $E2E_TMP/receiveSUFFIX.sock (pid rpid, output
# recvSUFFIX.out) and the pipeline run with --move-to it (pid vpid, output
# runSUFFIX.out); succeeds once the job has printed tick 30
start_move() {
	local sock=$E2E_TMP/receive$1.sock
	"$VMCI" vm receive --listen "$sock" >"$E2E_TMP/recv$1.out" 2>&1 &
	rpid=$!
	wait_for "$E2E_TMP/recv$1.out" "waiting for a VM"
	"$VMCI" run --cold --logs --move-to "$sock" >"$E2E_TMP/run$1.out" 2>&1 &
	vpid=$!
	wait_for "$E2E_TMP/run$1.out" "tick 30"
}

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
grep -iE "mov|receiv" "$E2E_TMP/run.out" "$E2E_TMP/recv.out" | sed 's/^/# /'
if grep -q "moved to $sock" "$E2E_TMP/run.out"; then pass "vmci run says where the job went"
else fail "vmci run says where the job went" "$(grep -i mov "$E2E_TMP/run.out" | head -3)"; fi

# ---- the destination killed mid-move ----------------------------------------------

if start_move 2; then
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
