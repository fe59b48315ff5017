#!/usr/bin/env bash
# `vmci vm run` as a user runs it: streams, exit codes, help, errors, and no
# QEMU left behind when vmci is killed.
set -u
. "$(dirname "$0")/lib.sh"

out=$E2E_TMP/out err=$E2E_TMP/err
"$VMCI" vm run busybox-x86_64 -- sh -c 'uname -m; echo err >&2; exit 3' >"$out" 2>"$err"
rc=$?
expect_eq vm_run_passes_exit_status 3 "$rc"
expect_eq vm_run_streams_stdout "x86_64" "$(cat "$out")"
expect_eq vm_run_streams_stderr "err" "$(grep -v '^vmci:' "$err" | grep -v '^building' )"

"$VMCI" vm run busybox-x86_64 -- sh -c 'kill -KILL $$' >/dev/null 2>&1
expect_eq vm_run_reports_a_signal_as_128_plus_n 137 "$?"

"$VMCI" vm run --timeout 1s busybox-x86_64 -- sleep 30 >/dev/null 2>"$err"
expect_eq vm_run_timeout_exits_124 124 "$?"

"$VMCI" vm run no-such-image -- true >/dev/null 2>"$err"
rc=$?
if [ "$rc" = 125 ] && grep -q "no-such-image" "$err"; then pass vm_run_unknown_image_is_a_clear_error
else fail vm_run_unknown_image_is_a_clear_error "rc=$rc: $(cat "$err")"; fi

"$VMCI" --help >"$out" 2>&1
if [ $? = 0 ] && grep -q "vm" "$out" && grep -q doctor "$out"; then pass help_lists_commands
else fail help_lists_commands "$(cat "$out")"; fi

"$VMCI" nonsense >/dev/null 2>"$err"
expect_eq unknown_command_exits_2 2 "$?"

"$VMCI" doctor --json >"$out" 2>"$err"
if grep -q '"accelerator"' "$out" && grep -q '"image_store"' "$out"; then pass doctor_json_reports_accelerator_and_store
else fail doctor_json_reports_accelerator_and_store "$(cat "$out" "$err")"; fi

# SIGKILL of vmci must take its QEMU with it. A zombie counts as gone.
alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
"$VMCI" vm run busybox-x86_64 -- sleep 120 >/dev/null 2>&1 &
vmci_pid=$!
qemu_pid=""
for _ in $(seq 1 200); do
	qemu_pid=$(pgrep -P "$vmci_pid" -f qemu-system || true)
	[ -n "$qemu_pid" ] && break
	sleep 0.1
done
# Wait until the command runs, so the kill lands mid-command.
sleep 3
kill -9 "$vmci_pid"
wait "$vmci_pid" 2>/dev/null
gone=no
for _ in $(seq 1 50); do
	if [ -n "$qemu_pid" ] && ! alive "$qemu_pid"; then gone=yes; break; fi
	sleep 0.1
done
if [ -n "$qemu_pid" ]; then expect_eq qemu_dies_with_a_killed_vmci yes "$gone"
else fail qemu_dies_with_a_killed_vmci "no QEMU child was seen"; fi

# Runs from a warm pool are reverted in between: no run sees the last one's file.
"$VMCI" vm run --pool --repeat 3 busybox-x86_64 -- sh -c 'test -e /tmp/marker && echo dirty; touch /tmp/marker; echo clean' >"$out" 2>"$err"
rc=$?
if [ "$rc" = 0 ] && [ "$(grep -c '^clean$' "$out")" = 3 ] && ! grep -q dirty "$out" && [ "$(grep -c 'first output after' "$err")" = 3 ]
then pass vm_run_pool_reverts_between_runs
else fail vm_run_pool_reverts_between_runs "rc=$rc out=$(cat "$out") err=$(cat "$err")"; fi
