#!/usr/bin/env bash
# `vmci run` and `vmci shell` as a user runs them, in a git repository made
# here: the workspace (committed, modified, untracked, ignored files), a
# matrix over guest OSes, needs, fail-fast, max-parallel, timeouts, a
# failing step, artifacts, a run directory per run (two runs at once), a
# flood capped by log-limit, retries of an infrastructure failure,
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
# run_dir JSON_FILE: the run's own directory, from vmci run --json
run_dir() { sed -n 's/^  "dir": "\(.*\)",\{0,1\}$/\1/p' "$1"; }

new_repo "$repo" || exit 1
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
          [ ! -e .vmci ] || echo "shipped .vmci: \$(ls -A .vmci)"
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
dir=$(run_dir "$out")
case $dir in
"$repo"/.vmci/runs/20[0-9][0-9]*) pass run_json_names_the_run_directory ;;
*) fail run_json_names_the_run_directory "dir '$dir'" ;;
esac
contains run_summary_names_the_run_directory "$err" "logs and artifacts: .vmci/runs/${dir##*/}/"
art=$dir/artifacts/second
if [ -f "$art/out/a.txt" ] && [ -f "$art/out/b.txt" ] && [ -f "$art/out/deep/c.txt" ] && [ ! -e "$art/out/x.log" ]; then
	pass artifacts_glob_downloads_the_matches
else
	fail artifacts_glob_downloads_the_matches "$(cd "$repo/.vmci" 2>/dev/null && find . | head -20)"
fi
if [ -s "$dir/logs/files.log" ] && grep -q "present committed.txt" "$dir/logs/files.log"; then
	pass run_writes_a_log_per_job
else
	fail run_writes_a_log_per_job "$(ls "$dir/logs" 2>&1)"
fi
if grep -q '"result": "passed"' "$out" && grep -q "\"sha\": \"$sha\"" "$out" && grep -q '"name": "second"' "$out"; then
	pass run_json_reports_the_result
else
	fail run_json_reports_the_result "$(head -c 600 "$out")"
fi
# The workspace must never ship the run's own output (vmci's own lines name it: not those).
"$VMCI" run --logs files >"$out" 2>&1
grep -F '[files] ' "$out" >"$E2E_TMP/files.out"
lacks run_output_dir_is_not_shipped "$E2E_TMP/files.out" ".vmci"

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

# ---- two runs at once in one tree: each keeps its own logs and artifacts --------------

cat >.vmci.yml <<'EOF'
jobs:
  mine:
    image: busybox-x86_64
    steps:
      - run: mkdir -p out && echo "$VMCI_RUN_ID" >out/id.txt && echo "this is $VMCI_RUN_ID"; sleep 3
    artifacts: [out/id.txt]
EOF
"$VMCI" run --logs --json -j 1 >"$E2E_TMP/one.json" 2>"$E2E_TMP/one.err" &
one=$!
"$VMCI" run --logs --json -j 1 >"$E2E_TMP/two.json" 2>"$E2E_TMP/two.err" &
two=$!
wait $one
rc1=$?
wait $two
rc2=$?
expect_eq two_runs_at_once_both_pass "0 0" "$rc1 $rc2"
d1=$(run_dir "$E2E_TMP/one.json") d2=$(run_dir "$E2E_TMP/two.json")
if [ -n "$d1" ] && [ -n "$d2" ] && [ "$d1" != "$d2" ] && [ -d "$d1" ] && [ -d "$d2" ]; then
	pass two_runs_at_once_get_directories_of_their_own
else
	fail two_runs_at_once_get_directories_of_their_own "'$d1' '$d2'"
fi
# own_log_and_artifact NAME DIR: the log and the artifact in DIR are its run's alone
own_log_and_artifact() {
	local id="local-${2##*/}" log=$2/logs/mine.log
	if [ "$(grep -c '^==> starting on' "$log" 2>/dev/null)" = 1 ] &&
		[ "$(grep -c '^this is ' "$log")" = 1 ] && grep -qx "this is $id" "$log" &&
		[ "$(cat "$2/artifacts/mine/out/id.txt" 2>/dev/null)" = "$id" ]; then
		pass "$1"
	else
		fail "$1" "log: $(head -20 "$log" 2>&1); artifact: $(cat "$2/artifacts/mine/out/id.txt" 2>&1)"
	fi
}
own_log_and_artifact first_of_two_runs_keeps_its_own_log_and_artifact "$d1"
own_log_and_artifact second_of_two_runs_keeps_its_own_log_and_artifact "$d2"
latest=$(readlink "$repo/.vmci/runs/latest")
if [ -n "$latest" ] && { [ "$latest" = "${d1##*/}" ] || [ "$latest" = "${d2##*/}" ]; }; then
	pass latest_points_to_one_of_the_runs
else
	fail latest_points_to_one_of_the_runs "latest -> '$latest'; runs '$d1' '$d2'"
fi

# ---- a flood: the log stops at its log-limit, keeping its head and its tail -----------

cat >.vmci.yml <<'EOF'
jobs:
  flood:
    image: busybox-x86_64
    log-limit: 1M
    steps:
      - run: yes | head -c 10m; echo flood-end; exit 7
EOF
"$VMCI" run --logs --json >"$out" 2>"$err"
rc=$?
expect_eq flood_still_fails_with_the_command_status 1 "$rc"
contains flood_summary_shows_the_exit_status "$err" "flood: step 'yes | head -c 10m; echo flood-end; exit 7': exited 7"
log=$(run_dir "$out")/logs/flood.log
size=$(wc -c <"$log" 2>/dev/null || echo 0)
if [ "$size" -gt 0 ] && [ "$size" -le 1048576 ]; then
	pass flood_log_stops_at_the_limit
else
	fail flood_log_stops_at_the_limit "size $size"
fi
# "==> log cut: N bytes dropped here (log-limit 1M keeps the first H and the last T bytes)"
notice=$(grep -a '^==> log cut: ' "$log" | head -1)
read -r dropped head tail <<<"$(echo "$notice" | sed -n 's/^==> log cut: \([0-9]*\) bytes dropped here (log-limit 1M keeps the first \([0-9]*\) and the last \([0-9]*\) bytes)$/\1 \2 \3/p')"
# All the log was given: the step's output (10m of "y\n", "flood-end\n") and vmci's own lines.
own=$(grep -a '^==> ' "$log" | grep -av '^==> log cut: ' | wc -c)
given=$((10485760 + 10 + own))
if [ -n "${dropped:-}" ] && [ $((dropped + head + tail)) = "$given" ] &&
	[ $((size - head - tail)) -le 200 ] && [ "$(grep -ac '^==> log cut: ' "$log")" = 1 ]; then
	pass flood_log_notice_counts_the_dropped_bytes_exactly
else
	fail flood_log_notice_counts_the_dropped_bytes_exactly "notice '$notice', size $size, given $given"
fi
if head -c 4096 "$log" | grep -aq '^==> step 1/1: ' && tail -c 300 "$log" | grep -aq '^flood-end$' &&
	tail -n 1 "$log" | grep -aq '^==> failed: exited 7'; then
	pass flood_log_keeps_its_head_and_its_tail
else
	fail flood_log_keeps_its_head_and_its_tail "$(head -c 300 "$log"; echo ...; tail -c 300 "$log")"
fi
if grep -q "\"log_dropped\": ${dropped:-x}," "$out"; then
	pass flood_json_reports_the_cut
else
	fail flood_json_reports_the_cut "$(grep log_dropped "$out")"
fi
contains flood_lines_stop_at_the_cut "$err" "[flood] (the rest of its output is not shown"

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
