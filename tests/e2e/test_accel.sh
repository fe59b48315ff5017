#!/usr/bin/env bash
# The accelerator is the product's decision, proven by a guest that boots:
# with no VMCI_ACCEL set, a host whose KVM cannot run guests (these
# machines, or a QEMU that stops its guest with a KVM internal error) runs
# the README's first command under TCG within seconds, the verdict is kept,
# and a KVM that fails at run time is reported at once and never tried again.
set -u
. "$(dirname "$0")/lib.sh"
unset VMCI_ACCEL # the point of this file: vmci decides

helpers=${VMCI_TEST_HELPERS:-$(dirname "$VMCI")/tests/helpers}
store=${VMCI_HOME:-$HOME/.cache/vmci}
out=$E2E_TMP/out err=$E2E_TMP/err
now_ms() { date +%s%3N; }

# A home of its own (so the verdict starts absent) that shares the image store.
fresh_home() {
	local home
	home=$(mktemp -d "$E2E_TMP/home.XXXXXX")
	ln -s "$store/images" "$home/images"
	ln -s "$store/cache" "$home/cache" # the kernel package that names the image
	echo "$home"
}
readme_command() {
	"$VMCI" vm run busybox-x86_64 -- sh -c 'uname -m; echo err >&2; exit 3' >"$out" 2>"$err"
}
# json_field FILE FILTER: one value, by jq.
json_field() { jq -r "$2" "$1"; }

# Make sure the image exists before anything is timed.
"$VMCI" image build busybox-x86_64 >/dev/null 2>&1

# The reference: one boot forced to TCG.
t0=$(now_ms)
VMCI_ACCEL=tcg VMCI_HOME=$(fresh_home) readme_command
tcg_ms=$(( $(now_ms) - t0 ))

# ---- the README's first command, decided by vmci ----------------------------
home=$(fresh_home)
t0=$(now_ms)
VMCI_HOME=$home VMCI_LOG=info readme_command
rc=$? auto_ms=$(( $(now_ms) - t0 ))
expect_eq readme_command_without_vmci_accel_exits_3 3 "$rc"
expect_eq readme_command_without_vmci_accel_prints_x86_64 x86_64 "$(cat "$out")"
expect_eq readme_command_without_vmci_accel_prints_err err "$(grep -v '^vmci:' "$err")"
# The canary costs one more boot the first time: a few seconds, not the agent's 120 s wait.
if [ "$auto_ms" -lt $(( tcg_ms * 3 + 10000 )) ]; then pass first_run_is_within_seconds_of_a_tcg_boot
else fail first_run_is_within_seconds_of_a_tcg_boot "auto ${auto_ms} ms, TCG alone ${tcg_ms} ms"; fi
echo "# first run (canary included) ${auto_ms} ms, a TCG boot ${tcg_ms} ms"

verdict=$home/accel.json
if [ -f "$verdict" ] && grep -q '"key"' "$verdict" && grep -q '"tcg"' "$verdict"; then
	pass canary_writes_the_verdict_with_its_key
else fail canary_writes_the_verdict_with_its_key "$(cat "$verdict" 2>&1)"; fi

VMCI_HOME=$home "$VMCI" doctor --json >"$out" 2>"$err"
kvm_ok=$(json_field "$verdict" '.kvm.booted' 2>/dev/null)
decision=$(json_field "$out" '.accelerator' 2>/dev/null)
expect_eq doctor_follows_the_verdict "$([ "$kvm_ok" = true ] && echo kvm || echo tcg)" "$decision"
if [ "$kvm_ok" != true ]; then
	VMCI_HOME=$home "$VMCI" doctor >"$out" 2>&1
	if grep -q "KVM is present but its canary failed: ." "$out"; then pass doctor_says_why_kvm_is_not_used
	else fail doctor_says_why_kvm_is_not_used "$(head -3 "$out")"; fi
fi

# Whatever the verdict, VMs follow it (where KVM works, this is the KVM boot test).
want=$([ "$kvm_ok" = true ] && echo kvm || echo tcg)
VMCI_HOME=$home VMCI_LOG=info "$VMCI" vm run busybox-x86_64 -- true >"$out" 2>"$err"
if grep -q "ready in [0-9]* ms ($want)" "$err"; then pass vm_runs_under_the_accelerator_the_verdict_chose
else fail vm_runs_under_the_accelerator_the_verdict_chose "want $want: $(grep ready "$err")"; fi

# ---- later runs read the verdict -----------------------------------------------
before=$(cat "$verdict")
VMCI_HOME=$home VMCI_LOG=info readme_command
rc=$?
if [ "$rc" = 3 ] && ! grep -q canary "$err" && [ "$before" = "$(cat "$verdict")" ]; then
	pass second_run_reads_the_verdict_without_a_canary
else fail second_run_reads_the_verdict_without_a_canary "rc=$rc: $(grep canary "$err")"; fi

# ---- a verdict for another key is stale ----------------------------------------
sed -i 's/"key": "kernel=/"key": "kernel=0.0-older /' "$verdict"
VMCI_HOME=$home VMCI_LOG=info readme_command
rc=$?
key_now=$(VMCI_HOME=$home "$VMCI" doctor --json | json_field /dev/stdin '.accelerator_key')
if [ "$rc" = 3 ] && grep -q "booting a canary" "$err" &&
	[ "$(json_field "$verdict" '.key')" = "$key_now" ]; then
	pass stale_verdict_is_ignored_and_the_canary_runs_again
else fail stale_verdict_is_ignored_and_the_canary_runs_again "rc=$rc: $(grep -c canary "$err") canary lines"; fi

# ---- a KVM that stops the guest with an internal error ---------------------------
if [ ! -x "$helpers/fake_kvm_qemu" ]; then
	fail fake_kvm_qemu_is_built "missing $helpers/fake_kvm_qemu (make test builds it)"
	exit 0
fi
fakebin=$E2E_TMP/fakebin
mkdir -p "$fakebin"
ln -sf "$helpers/fake_kvm_qemu" "$fakebin/qemu-system-x86_64"
export FAKE_QEMU_REAL=$(command -v qemu-system-x86_64) FAKE_QEMU_LOG=$E2E_TMP/qemu.log
fake() { PATH=$fakebin:$PATH VMCI_HOME=$home "$@"; }

# A verdict that trusts KVM, for this (fake) QEMU's key.
claim_kvm_works() {
	local key
	key=$(fake "$VMCI" doctor --json | json_field /dev/stdin '.accelerator_key')
	cat >"$home/accel.json" <<JSON
{"version": 1, "key": "$key", "decision": "kvm", "source": "canary", "written_at": 1,
 "kvm": {"booted": true, "boot_ms": 100, "failure": ""}, "tcg": {"boot_ms": 2000}}
JSON
}

if [ ! -e /dev/kvm ]; then
	# The fake stands in for QEMU, but AUTO asks /dev/kvm first: without it there is nothing to try.
	echo "ok kvm_internal_error_tests # SKIP no /dev/kvm on this host"
	exit 0
fi

claim_kvm_works
: >"$FAKE_QEMU_LOG"
t0=$(now_ms)
fake "$VMCI" vm run --accel kvm busybox-x86_64 -- true >"$out" 2>"$err"
rc=$? took=$(( $(now_ms) - t0 ))
if [ "$rc" = 125 ] && [ "$took" -lt 5000 ] && grep -q "internal error" "$err" &&
	grep -q "VMCI_ACCEL=tcg" "$err" && grep -q "emulation failure" "$err"; then
	pass forced_kvm_internal_error_fails_within_5s_naming_the_cause
else fail forced_kvm_internal_error_fails_within_5s_naming_the_cause "rc=$rc in ${took} ms: $(head -c 600 "$err")"; fi
if [ "$(json_field "$home/accel.json" '.kvm.booted')" = false ] &&
	[ "$(json_field "$home/accel.json" '.source')" = runtime ] &&
	grep -q "KVM internal error" "$home/accel.json"; then
	pass internal_error_writes_the_verdict
else fail internal_error_writes_the_verdict "$(cat "$home/accel.json")"; fi

: >"$FAKE_QEMU_LOG"
fake "$VMCI" vm run busybox-x86_64 -- true >"$out" 2>"$err"
rc=$?
expect_eq next_vm_boots_under_tcg_without_a_canary "0 tcg" "$rc $(tr '\n' ' ' <"$FAKE_QEMU_LOG" | sed 's/ $//')"

# In auto, the VM that meets the failure boots again under TCG, and the verdict is written.
claim_kvm_works
: >"$FAKE_QEMU_LOG"
t0=$(now_ms)
fake readme_command
rc=$? took=$(( $(now_ms) - t0 ))
expect_eq auto_retries_under_tcg_after_an_internal_error "3 x86_64 kvm tcg" \
	"$rc $(cat "$out") $(tr '\n' ' ' <"$FAKE_QEMU_LOG" | sed 's/ $//')"
if [ "$took" -lt $(( tcg_ms * 2 + 5000 )) ]; then pass auto_retry_costs_seconds_not_minutes
else fail auto_retry_costs_seconds_not_minutes "${took} ms (a TCG boot ${tcg_ms} ms)"; fi
expect_eq auto_retry_records_the_failure false "$(json_field "$home/accel.json" '.kvm.booted')"
