#!/usr/bin/env bash
# `vmci run` and `vmci shell` as a user runs them, in a git repository made
# here: the workspace (committed, modified, untracked, ignored files), a
# matrix over guest OSes, needs, fail-fast, max-parallel, timeouts, a
# failing step, artifacts, retries of an infrastructure failure,
# --keep-on-failure, --json, Ctrl-C, and a shell on a pseudo-terminal.
# Most jobs use busybox-x86_64 (it boots in seconds); debian-12 and
# busybox-aarch64 only when `vmci image ls` shows them built.
set -u
. "$(dirname "$0")/lib.sh"

export NO_COLOR=1
repo=$E2E_TMP/repo
out=$E2E_TMP/out err=$E2E_TMP/err

has_image() { "$VMCI" image ls --json 2>/dev/null | grep -q "\"name\": \"$1\""; }
have_debian=no have_arm=no
has_image debian-12 && have_debian=yes
has_image busybox-aarch64 && have_arm=yes
# contains NAME FILE TEXT: TEXT is in FILE
contains() {
	if grep -qF -- "$3" "$2"; then pass "$1"; else fail "$1" "no '$3' in: $(tail -c 1500 "$2")"; fi
}
lacks() {
	if ! grep -qF -- "$3" "$2"; then pass "$1"; else fail "$1" "'$3' should not be in: $(grep -F -- "$3" "$2" | head -3)"; fi
}
# line_of FILE TEXT: the first line number holding TEXT (or 999999)
line_of() { grep -nF -- "$2" "$1" | head -1 | cut -d: -f1 | grep . || echo 999999; }
alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

mkdir -p "$repo" && cd "$repo" || exit 1
git init -q . && git config user.email t@example.org && git config user.name test
echo "committed content" >committed.txt
echo "before" >modified.txt
echo "gone" >deleted.txt
printf '#!/bin/sh\necho tool ran\n' >tool.sh && chmod 755 tool.sh
ln -s committed.txt link.txt
printf 'ignored.txt\nbuild-output/\n' >.gitignore
git add -A && git commit -qm init

# ---- a passing run: workspace, OS matrix, needs, artifacts, a C build ----------

images="busybox-x86_64"
[ $have_debian = yes ] && images="$images, debian-12"
[ $have_arm = yes ] && images="$images, busybox-aarch64"
cat >.vmci.yml <<EOF
jobs:
  files:
    image: busybox-x86_64
    env: {GREETING: "hello \${{ vmci.sha }}"}
    steps:
      - name: list
        run: |
          for f in committed.txt modified.txt untracked.txt ignored.txt deleted.txt tool.sh link.txt; do
            if [ -e "\$f" ]; then echo "present \$f: \$(cat \$f)"; else echo "absent \$f"; fi
          done
          ls -l tool.sh link.txt
          ./tool.sh
          echo "greeting=\$GREETING sha=\$VMCI_SHA"
  os:
    image: \${{ matrix.image }}
    strategy:
      matrix:
        image: [$images]
    resources: {memory: 512M}
    steps:
      - run: echo "report os=\$(. /etc/os-release 2>/dev/null; echo \${PRETTY_NAME:-?}) arch=\$(uname -m)"
  first:
    image: busybox-x86_64
    steps:
      - run: sleep 1; echo first done
  second:
    needs: [first]
    image: busybox-x86_64
    steps:
      - run: echo second ran
      - name: tolerated
        run: exit 9
        continue-on-error: true
      - run: mkdir -p out/deep && echo a >out/a.txt && echo b >out/b.txt && echo c >out/deep/c.txt && echo x >out/x.log
    artifacts:
      - out/*.txt
      - out/deep
EOF
if [ $have_debian = yes ]; then
	printf 'int add(int a, int b) { return a + b; }\n' >add.c
	printf '#include <stdio.h>\nint add(int, int);\nint main(void) { printf("sum %%d\\n", add(2, 3)); return add(2, 3) != 5; }\n' >main.c
	printf 'sum: main.c add.c\n\tcc -O2 -o $@ main.c add.c\ncheck: sum\n\t./sum\n' >Makefile
	cat >>.vmci.yml <<'EOF'
  cbuild:
    image: debian-12
    steps:
      - run: make check
EOF
fi
git add .vmci.yml && git commit -qm pipeline
echo "after" >modified.txt
echo "new file" >untracked.txt
echo "secret" >ignored.txt
rm deleted.txt

"$VMCI" run --logs --json -j 3 >"$out" 2>"$err"
rc=$?
expect_eq run_passing_pipeline_exits_0 0 "$rc"
contains workspace_has_committed_file "$err" "present committed.txt: committed content"
contains workspace_has_modified_content "$err" "present modified.txt: after"
contains workspace_has_untracked_file "$err" "present untracked.txt: new file"
contains workspace_lacks_ignored_file "$err" "absent ignored.txt"
contains workspace_lacks_deleted_file "$err" "absent deleted.txt"
contains workspace_keeps_modes "$err" "tool ran"
contains workspace_keeps_symlinks "$err" "link.txt -> committed.txt"
sha=$(git rev-parse HEAD)
contains run_expands_vmci_sha_and_sets_env "$err" "greeting=hello $sha sha=$sha"
contains matrix_reports_busybox_x86_64 "$err" "[os (busybox-x86_64)] report os=vmci busybox (x86_64) arch=x86_64"
if [ $have_debian = yes ]; then
	contains matrix_reports_debian_12 "$err" "[os (debian-12)] report os=Debian GNU/Linux 12 (bookworm) arch=x86_64"
	contains debian_builds_and_tests_c_with_make "$err" "[cbuild] sum 5"
else
	pass "matrix_reports_debian_12 # skip debian-12 is not built (vmci image build debian-12)"
	pass "debian_builds_and_tests_c_with_make # skip debian-12 is not built"
fi
if [ $have_arm = yes ]; then
	contains matrix_reports_busybox_aarch64 "$err" "[os (busybox-aarch64)] report os=vmci busybox (aarch64) arch=aarch64"
else
	pass "matrix_reports_busybox_aarch64 # skip busybox-aarch64 is not built"
fi
if [ "$(line_of "$err" "[second] starting")" -gt "$(line_of "$err" "[first] passed")" ]; then
	pass needs_waits_for_the_needed_job
else
	fail needs_waits_for_the_needed_job "$(grep -E '^\[(first|second)\]' "$err" | head)"
fi
contains continue_on_error_lets_the_job_pass "$err" "[second] step 'tolerated' failed, continuing: exited 9"
art=$repo/.vmci/artifacts/second
if [ -f "$art/out/a.txt" ] && [ -f "$art/out/b.txt" ] && [ -f "$art/out/deep/c.txt" ] && [ ! -e "$art/out/x.log" ]; then
	pass artifacts_glob_downloads_the_matches
else
	fail artifacts_glob_downloads_the_matches "$(cd "$repo/.vmci" 2>/dev/null && find . | head -20)"
fi
if [ -s "$repo/.vmci/logs/files.log" ] && grep -q "present committed.txt" "$repo/.vmci/logs/files.log"; then
	pass run_writes_a_log_per_job
else
	fail run_writes_a_log_per_job "$(ls "$repo/.vmci/logs" 2>&1)"
fi
if grep -q '"result": "passed"' "$out" && grep -q "\"sha\": \"$sha\"" "$out" && grep -q '"name": "second"' "$out"; then
	pass run_json_reports_the_result
else
	fail run_json_reports_the_result "$(head -c 600 "$out")"
fi
# The workspace must never ship the run's own output.
"$VMCI" run --logs files >"$out" 2>&1
lacks run_output_dir_is_not_shipped "$out" ".vmci"

# ---- failures: a failing step, fail-fast, max-parallel, a timeout ---------------------

cat >.vmci.yml <<'EOF'
jobs:
  broken:
    image: busybox-x86_64
    steps:
      - run: echo fine
      - name: boom
        run: echo "the boom output"; echo "on stderr" >&2; exit 3
      - run: echo never reached
  ff:
    image: busybox-x86_64
    strategy:
      matrix: {n: [a, b, c]}
      max-parallel: 1
    steps:
      - run: test ${{ matrix.n }} != a
  noff:
    image: busybox-x86_64
    strategy:
      matrix: {n: [a, b]}
      fail-fast: false
      max-parallel: 1
    steps:
      - run: test ${{ matrix.n }} != a
  slow:
    image: busybox-x86_64
    steps:
      - run: sleep 60
        timeout: 2s
EOF
"$VMCI" run --logs -j 3 >"$out" 2>&1
rc=$?
expect_eq failing_step_exits_1 1 "$rc"
contains failing_step_summary_names_step_and_status "$out" "boom: exited 3"
contains failing_step_summary_shows_its_output "$out" "  | the boom output"
lacks failing_step_stops_the_job "$out" "never reached"
contains fail_fast_cancels_the_rest_of_the_matrix "$out" "(fail-fast: 'ff (a)' failed)"
lacks fail_fast_never_starts_the_cancelled_jobs "$out" "[ff (b)] starting"
if grep -q "^noff (b) *passed" "$out" && grep -q "^noff (a) *failed" "$out"; then
	pass without_fail_fast_the_matrix_runs_on
else
	fail without_fail_fast_the_matrix_runs_on "$(grep '^noff' "$out")"
fi
if [ "$(line_of "$out" "[noff (b)] starting")" -gt "$(line_of "$out" "[noff (a)] failed")" ]; then
	pass max_parallel_runs_the_matrix_one_at_a_time
else
	fail max_parallel_runs_the_matrix_one_at_a_time "$(grep '^\[noff' "$out")"
fi
contains step_timeout_fails_the_job "$out" "step timed out after 2.0s"

# ---- an infrastructure failure is retried, and exits 3 ------------------------------

cat >.vmci.yml <<'EOF'
jobs:
  dies:
    image: busybox-x86_64
    retries: 1
    steps:
      - run: echo o >/proc/sysrq-trigger; sleep 30
EOF
"$VMCI" run --logs --json >"$out" 2>"$err"
rc=$?
expect_eq infrastructure_error_exits_3 3 "$rc"
if grep -q '"attempts": 2' "$out" && grep -q '"result": "error"' "$out"; then
	pass infrastructure_error_is_retried
else
	fail infrastructure_error_is_retried "$(head -c 800 "$out")"
fi

# ---- usage and pipeline errors exit 2 ---------------------------------------------------

printf 'jobs:\n  a:\n    image: busybox-x86_64\n    stpes: []\n' >.vmci.yml
"$VMCI" run >"$out" 2>&1
rc=$?
if [ "$rc" = 2 ] && grep -q ".vmci.yml:4:5: error: unknown key 'stpes'" "$out"; then
	pass invalid_pipeline_exits_2_with_position
else
	fail invalid_pipeline_exits_2_with_position "rc=$rc $(cat "$out")"
fi
printf 'jobs:\n  a:\n    image: busybox-x86_64\n    steps: [{run: "true"}]\n' >.vmci.yml
"$VMCI" run nosuchjob >"$out" 2>&1
rc=$?
if [ "$rc" = 2 ] && grep -q "no job 'nosuchjob'" "$out"; then pass unknown_job_exits_2
else fail unknown_job_exits_2 "rc=$rc $(cat "$out")"; fi

# ---- --keep-on-failure: a shell in the failed job's VM ----------------------------------

cat >.vmci.yml <<'EOF'
jobs:
  keepme:
    image: busybox-x86_64
    steps:
      - run: echo "left by the step" >state.txt; exit 1
EOF
echo 'cat state.txt; pwd; exit' | "$VMCI" run --keep-on-failure >"$out" 2>&1
rc=$?
expect_eq keep_on_failure_still_exits_1 1 "$rc"
contains keep_on_failure_offers_a_shell "$out" "is kept"
contains keep_on_failure_shell_sees_the_job_state "$out" "left by the step"
contains keep_on_failure_shell_starts_in_the_workspace "$out" "/work/src"
if pgrep -f "qemu-system.*${TMPDIR:-/tmp}/vmci-vm" >/dev/null; then
	fail keep_on_failure_stops_the_vm_after_the_shell "$(pgrep -fa qemu-system | head -3)"
else
	pass keep_on_failure_stops_the_vm_after_the_shell
fi

# ---- Ctrl-C: cancels, stops every VM, exits 130 -----------------------------------------

cat >.vmci.yml <<'EOF'
jobs:
  sleeper:
    image: busybox-x86_64
    strategy:
      matrix: {n: ["1", "2"]}
    steps:
      - run: echo started; sleep 300
EOF
"$VMCI" run --logs -j 2 >"$out" 2>&1 &
vmci_pid=$!
for _ in $(seq 1 600); do
	[ "$(grep -c '] started' "$out")" -ge 2 ] && break
	sleep 0.1
done
qemus=$(pgrep -P "$vmci_pid" -f qemu-system | tr '\n' ' ')
kill -INT "$vmci_pid"
wait "$vmci_pid"
rc=$?
expect_eq ctrl_c_exits_130 130 "$rc"
left=""
for q in $qemus; do alive "$q" && left="$left $q"; done
if [ -n "$qemus" ] && [ -z "$left" ]; then pass ctrl_c_leaves_no_qemu_behind
else fail ctrl_c_leaves_no_qemu_behind "qemus seen: '$qemus', still alive: '$left'"; fi
if ls -d "${TMPDIR:-/tmp}"/vmci-vm-* >/dev/null 2>&1; then
	fail ctrl_c_leaves_no_vm_directory_behind "$(ls -d "${TMPDIR:-/tmp}"/vmci-vm-*)"
else
	pass ctrl_c_leaves_no_vm_directory_behind
fi
contains ctrl_c_reports_cancelled_jobs "$out" "2 cancelled"

# ---- vmci shell: a pseudo-terminal, its size, the exit status -------------------------

echo 'echo piped $(uname -m); exit 4' | "$VMCI" shell busybox-x86_64 >"$out" 2>&1
rc=$?
expect_eq shell_without_a_terminal_returns_the_status 4 "$rc"
contains shell_without_a_terminal_reads_stdin "$out" "piped x86_64"
if command -v script >/dev/null; then
	TERM=xterm script -qec "stty rows 33 cols 91; $VMCI shell busybox-x86_64 -- sh -c 'stty size; tty; exit 7'" \
		"$E2E_TMP/typescript" >/dev/null 2>&1 </dev/null
	rc=$?
	expect_eq shell_on_a_terminal_returns_the_status 7 "$rc"
	contains shell_gets_the_terminal_size "$E2E_TMP/typescript" "33 91"
	contains shell_runs_on_a_guest_pty "$E2E_TMP/typescript" "/dev/pts/"
else
	pass "shell_on_a_terminal_returns_the_status # skip script(1) is missing"
fi
