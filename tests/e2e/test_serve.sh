#!/usr/bin/env bash
# vmci serve end to end, as a user: a token, the service on a free loopback
# port with its own SQLite store (the image store stays $VMCI_HOME), a bare
# repository with the installed hook, and pushes of one branch per case:
#
#   main     a two-job pipeline (test needs build; build is a matrix of two
#            images, busybox-x86_64 and busybox-aarch64), then a failing step
#   feature  a branch the pipeline's on.push.branches leaves out: no run, and why
#   cr       a log with carriage returns, streamed and followed byte for byte
#   cancel   a running run cancelled: its job cancelled, its VM reverted and
#            serving the next job
#   term     SIGTERM: no more claims, a job that ends within --grace finishes,
#            one past it is requeued and runs as attempt 2 on the next start
#   many     kill -9 while 4 jobs run and 4 are queued, then a restart; a
#            `vmci logs -f` follower carries on through it
#   --cold   a VM per job, none kept
#
# The API's errors and the log stream are checked on the way.
set -u
. "$(dirname "$0")/lib.sh"

if ! command -v git >/dev/null || ! command -v curl >/dev/null || ! command -v jq >/dev/null; then
	echo "ok serve_skipped # SKIP needs git, curl and jq"
	exit 0
fi

T=$E2E_TMP
# The service's VMs keep their run directories in here: a QEMU left behind is easy to find.
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"
DB="sqlite:$T/vmci.db"
SERVE_PID=""
FOLLOW_PID=""
stop_serve() {
	if [ -n "$SERVE_PID" ]; then
		kill -TERM "$SERVE_PID" 2>/dev/null
		for _ in $(seq 300); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$SERVE_PID" 2>/dev/null
		wait "$SERVE_PID" 2>/dev/null
		SERVE_PID=""
	fi
}
cleanup() {
	[ -n "$FOLLOW_PID" ] && kill "$FOLLOW_PID" 2>/dev/null
	stop_serve
	pkill -9 -f "qemu-system.*$TMPDIR" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

cat >"$T/serve.yml" <<YML
listen: 127.0.0.1:0
db: $DB
host: { name: e2e, capacity: 1 }
repos:
  - { name: widget, url: $T/widget.git }
YML

# start_serve [OPTION...]: starts vmci serve in the background, sets PORT from its first line.
start_serve() {
	: >"$T/serve.log"
	"$VMCI" serve --config "$T/serve.yml" --grace 2s "$@" 2>>"$T/serve.log" &
	SERVE_PID=$!
	PORT=""
	for _ in $(seq 100); do
		PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$T/serve.log")
		[ -n "$PORT" ] && break
		sleep 0.1
	done
	export VMCI_SERVER=http://127.0.0.1:$PORT
	# The port is new each time: the repository's hook must know it.
	if [ -d "$T/widget.git" ]; then
		"$VMCI" hook install --server "$VMCI_SERVER" --repo widget --token-file "$T/token" "$T/widget.git" 2>/dev/null
	fi
}

api() { curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/$1"; }

# wait_run RUN SECONDS: waits until the run has finished; prints its status.
wait_run() {
	local st=""
	for _ in $(seq $(($2 * 2))); do
		st=$(api "runs/$1" | jq -r .status)
		case $st in queued | running | "") sleep 0.5 ;; *) break ;; esac
	done
	echo "$st"
}

# wait_log JOB TEXT SECONDS: waits until the job's log holds TEXT; 0 when it does.
wait_log() {
	for _ in $(seq $(($3 * 4))); do
		api "jobs/$1/log" | grep -q "$2" && return 0
		sleep 0.25
	done
	return 1
}

# job_id RUN NAME: the id of the run's job called NAME.
job_id() { api "runs/$1" | jq -r --arg n "$2" '.jobs[] | select(.name==$n) | .id'; }

# push BRANCH: pushes the work tree's branch; prints the run id the hook reported.
push() {
	(cd "$T/work" && git push -q origin "$1" 2>&1) | sed -n 's/.*vmci: run \([0-9]*\) for.*/\1/p'
}

# commit_pipeline BRANCH: commits .vmci.yml (from stdin) on BRANCH, made from main.
commit_pipeline() {
	(cd "$T/work" && { git checkout -q "$1" 2>/dev/null || git checkout -q -b "$1" main; } &&
		cat >.vmci.yml && git commit -qam "$1")
}

# on_tty FILE CMD...: runs CMD on a pseudo-terminal (script), its output into FILE; its status.
on_tty() {
	local file=$1
	shift
	script -qefc "env -u NO_COLOR TERM=xterm $(printf '%q ' "$@")" "$file" </dev/null >/dev/null 2>&1
}

# plain FILE: FILE without its terminal control sequences.
plain() { sed 's/\x1b\[[0-9;]*[A-Za-z]//g; s/\r//g' "$1"; }

# qemus: pids of the QEMUs of this test's VMs.
qemus() { pgrep -f "qemu-system.*$TMPDIR" | sort | tr '\n' ' '; }

# ---- token and service ----------------------------------------------------------
TOKEN=$("$VMCI" token create e2e --db "$DB")
case $TOKEN in vmci_*) pass token_create_prints_only_the_token ;;
*) fail token_create_prints_only_the_token "got '$TOKEN'" ;; esac
echo "$TOKEN" >"$T/token"
export VMCI_TOKEN=$TOKEN
AUTH="Authorization: Bearer $TOKEN"

start_serve
expect_eq serve_listens "true" "$(curl -s "$VMCI_SERVER/healthz" | jq -r .ok)"

# ---- a push through the hook: two jobs, one a matrix of two images ---------------------------
git init -q --bare "$T/widget.git"
"$VMCI" hook install --server "$VMCI_SERVER" --repo widget --token-file "$T/token" "$T/widget.git" 2>/dev/null
expect_eq hook_install_writes_an_executable_hook "yes" "$([ -x "$T/widget.git/hooks/post-receive" ] && echo yes)"

git init -q -b main "$T/work"
cd "$T/work"
git config user.email e2e@example.org && git config user.name e2e
echo widget >greeting.txt
cat >.vmci.yml <<'YML'
jobs:
  build:
    image: ${{ matrix.image }}
    strategy:
      matrix:
        image: [busybox-x86_64, busybox-aarch64]
    resources: { memory: 256M }
    steps:
      - name: greet
        run: echo "hello from $(cat greeting.txt) on $(uname -m)"; mkdir -p out; echo built >out/result.txt
    artifacts: [out/result.txt]
  test:
    needs: [build]
    image: busybox-x86_64
    resources: { memory: 256M }
    steps:
      - name: check
        run: echo "testing ${{ vmci.ref }}"; test -f greeting.txt
YML
git add -A && git commit -qm one
git remote add origin "$T/widget.git"
cd - >/dev/null
RUN=$(push main)
if [ -n "$RUN" ]; then pass push_creates_a_run; else fail push_creates_a_run "no run id in the push's output"; RUN=0; fi
# vmci status on a terminal from the start: the board of vmci run, live, until the run ends.
on_tty "$T/status.tty" "$VMCI" status "$RUN" &
STATUS_PID=$!

expect_eq pushed_run_succeeds success "$(wait_run "$RUN" 150)"
wait "$STATUS_PID"
expect_eq status_on_a_terminal_exits_0_for_a_passed_run 0 $?
BOARD=$(plain "$T/status.tty")
case $BOARD in *"widget #$RUN: 3 jobs, "*) pass status_on_a_terminal_draws_the_board ;;
*) fail status_on_a_terminal_draws_the_board "got: $(head -c 600 "$T/status.tty" | cat -v)" ;; esac
# Redrawn in place (the cursor goes up over the last draw), with a job seen running on the way.
if grep -q $'\x1b\[[0-9]*A' "$T/status.tty" && echo "$BOARD" | grep -Eq '^  build \(busybox-x86_64\) +(booting|running) '; then
	pass status_on_a_terminal_redraws_as_jobs_change
else fail status_on_a_terminal_redraws_as_jobs_change "got: $(echo "$BOARD" | head -20)"; fi
expect_eq status_on_a_terminal_ends_with_the_summary_of_vmci_run "3" \
	"$(echo "$BOARD" | grep -Ec '^(build \(busybox-(x86_64|aarch64)\)|test) +passed ')"
case $BOARD in *"3 passed in "*) pass status_summary_counts_the_jobs ;;
*) fail status_summary_counts_the_jobs "got: $(echo "$BOARD" | tail -8)" ;; esac
on_tty "$T/status-nocolor.tty" env NO_COLOR=1 "$VMCI" status "$RUN"
expect_eq status_with_no_color_exits_0 0 $?
expect_eq status_with_no_color_draws_no_board "0 1" \
	"$(grep -c $'\x1b' "$T/status-nocolor.tty") $(grep -c "^run $RUN  success" "$T/status-nocolor.tty")"
RUN_JSON=$(api "runs/$RUN")
BUILD=$(job_id "$RUN" "build (busybox-x86_64)")
BUILD_ARM=$(job_id "$RUN" "build (busybox-aarch64)")
TEST=$(job_id "$RUN" test)
expect_eq run_has_a_matrix_of_two_images_and_a_dependent \
	"build (busybox-x86_64)=success build (busybox-aarch64)=success test=success" \
	"$(echo "$RUN_JSON" | jq -r '[.jobs[] | "\(.name)=\(.status)"] | join(" ")')"
expect_eq run_records_trigger_push push "$(echo "$RUN_JSON" | jq -r .trigger)"
expect_eq dependent_starts_after_both_images "true" \
	"$(echo "$RUN_JSON" | jq -r '([.jobs[] | select(.name != "test") | .finished_at] | max) <= (.jobs[] | select(.name == "test") | .started_at)')"

LOG=$(api "jobs/$BUILD/log")
case $LOG in *"hello from widget on x86_64"*) pass log_via_api_has_the_output ;;
*) fail log_via_api_has_the_output "log: $LOG" ;; esac
case $(api "jobs/$BUILD_ARM/log") in *"hello from widget on aarch64"*) pass aarch64_job_ran_on_aarch64 ;;
*) fail aarch64_job_ran_on_aarch64 "log: $(api "jobs/$BUILD_ARM/log")" ;; esac
out=$("$VMCI" logs "$TEST")
expect_eq vmci_logs_exits_0 0 $?
case $out in *"testing refs/heads/main"*) pass vmci_logs_prints_the_log ;;
*) fail vmci_logs_prints_the_log "got: $out" ;; esac
expect_eq artifact_indexed "out/result.txt" "$(api "jobs/$BUILD/artifacts" | jq -r '.artifacts[0].path')"
expect_eq artifact_served "built" "$(api "jobs/$BUILD/artifacts/out/result.txt")"
expect_eq artifact_of_the_other_image_served "built" "$(api "jobs/$BUILD_ARM/artifacts/out/result.txt")"

"$VMCI" status "$RUN" >/dev/null
expect_eq status_of_a_passed_run_exits_0 0 $?
"$VMCI" runs | grep -q "^$RUN .*success"
expect_eq runs_lists_the_run 0 $?
"$VMCI" status 99999 2>/dev/null
expect_eq status_of_an_unknown_run_exits_2 2 $?
VMCI_SERVER=http://127.0.0.1:1 "$VMCI" runs 2>/dev/null
expect_eq unreachable_server_exits_3 3 $?

# ---- SSE resume: exactly the bytes after the offset ---------------------------------------
FULL=$(api "jobs/$BUILD/log"; echo x)
FULL=${FULL%x}
OFF=10
SSE=$(curl -s -N --max-time 20 -H "$AUTH" -H "Last-Event-ID: $OFF" "$VMCI_SERVER/api/v1/jobs/$BUILD/log/stream" |
	awk 'BEGIN{inev=0; ev=""} /^event: /{ev=substr($0,8)} /^data: /{ if (ev=="") { if (inev) printf "\n"; printf "%s", substr($0,7); inev=1 } ; next} /^$/{inev=0; ev=""}'
	echo x)
SSE=${SSE%x}
expect_eq sse_resume_gives_exactly_the_remaining_bytes "${FULL:$OFF}" "$SSE"
curl -s -N --max-time 20 -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/$BUILD/log/stream" | grep -q '^event: end'
expect_eq sse_ends_with_an_end_event 0 $?

# ---- a failing step ---------------------------------------------------------------------
cd "$T/work"
sed -i 's/echo built >out\/result.txt/echo built >out\/result.txt; echo about to fail; exit 7/' .vmci.yml
git commit -qam fails
cd - >/dev/null
RUN2=$(push main)
expect_eq failing_step_fails_the_run failure "$(wait_run "${RUN2:-0}" 120)"
J=$(api "runs/${RUN2:-0}")
expect_eq failed_job_names_its_step "failure greet 7" "$(echo "$J" | jq -r '.jobs[] | select(.name=="build (busybox-x86_64)") | "\(.status) \(.failed_step) \(.exit_code)"')"
expect_eq dependent_of_a_failure_is_skipped skipped "$(echo "$J" | jq -r '.jobs[] | select(.name=="test") | .status')"
"$VMCI" status "${RUN2:-0}" >/dev/null
expect_eq status_of_a_failed_run_exits_1 1 $?
# Not a terminal, --wait: the board's plain lines, then the summary with the failing step's output.
"$VMCI" status --wait "${RUN2:-0}" >"$T/status2.out" 2>&1
expect_eq status_wait_of_a_failed_run_exits_1 1 $?
expect_eq status_wait_not_on_a_terminal_has_no_control_sequences 0 "$(grep -c $'\x1b' "$T/status2.out")"
if grep -q "^\[build (busybox-x86_64)\] step 'greet' failed: exited 7" "$T/status2.out" &&
	grep -Eq '^build \(busybox-x86_64\) +failed .*greet: exited 7' "$T/status2.out" &&
	grep -q '^  | about to fail' "$T/status2.out" && grep -Eq "^0 passed, 1 failed, (1 cancelled, )?1 skipped in " "$T/status2.out"; then
	pass status_wait_prints_the_summary_with_the_failing_output
else fail status_wait_prints_the_summary_with_the_failing_output "got: $(cat "$T/status2.out")"; fi
on_tty "$T/status2.tty" "$VMCI" status "${RUN2:-0}"
expect_eq status_on_a_terminal_exits_1_for_a_failed_run 1 $?
case $(plain "$T/status2.tty") in *"step 'greet': exited 7; its last output:"*"about to fail"*) pass status_on_a_terminal_shows_what_failed ;;
*) fail status_on_a_terminal_shows_what_failed "got: $(plain "$T/status2.tty" | tail -15)" ;; esac

# ---- a push to a branch the pipeline's on: does not select: no run, and why -------------------
commit_pipeline feature <<'YML'
on: { push: { branches: [main, "release/*"] } }
jobs:
  picky:
    image: busybox-x86_64
    resources: { memory: 256M }
    steps:
      - run: echo picked
YML
RUNS_BEFORE=$(api "runs?limit=500" | jq '.runs | length')
out=$(cd "$T/work" && git push origin feature 2>&1)
case $out in *"vmci: no run for refs/heads/feature"*"refs/heads/feature is not in on.push.branches (main, release/*)"*)
	pass push_to_an_unselected_branch_says_why ;;
*) fail push_to_an_unselected_branch_says_why "push said: $out" ;; esac
expect_eq push_to_an_unselected_branch_makes_no_run "$RUNS_BEFORE" "$(api "runs?limit=500" | jq '.runs | length')"
SHA=$(cd "$T/work" && git rev-parse feature)
echo "0000000000000000000000000000000000000000 $SHA refs/heads/feature" |
	"$VMCI" hook post-receive --server "$VMCI_SERVER" --repo widget 2>/dev/null
expect_eq hook_exits_0_for_an_unselected_branch 0 $?
code=$(curl -s -o "$T/body" -w '%{http_code}' -H "$AUTH" -X POST \
	-d '{"repo": "widget", "ref": "refs/heads/feature", "trigger": "push"}' "$VMCI_SERVER/api/v1/runs")
expect_eq api_push_to_an_unselected_branch_is_200_with_the_reason "200 null true" \
	"$code $(jq -r .run "$T/body") $(jq '.reason | test("not in on.push.branches")' "$T/body")"
RUN3=$("$VMCI" submit widget --ref refs/heads/feature)
expect_eq submit_runs_whatever_on_selects success "$(wait_run "${RUN3:-0}" 60)"

# ---- carriage returns in a log: the stream and vmci logs -f give back the exact bytes ----------
commit_pipeline cr <<'YML'
jobs:
  progress:
    image: busybox-x86_64
    resources: { memory: 256M }
    steps:
      - run: printf '10%%\r50%%\r100%%\r\ndone\n'; printf 'no newline at the end\r'
YML
RUN8=$(push cr)
CR=$(job_id "${RUN8:-0}" progress)
"$VMCI" logs -f "$CR" >"$T/cr.follow"
expect_eq logs_follow_of_a_passed_job_exits_0 0 $?
api "jobs/$CR/log" >"$T/cr.log"
if grep -q $'50%\r100%\r' "$T/cr.log" && cmp -s "$T/cr.log" "$T/cr.follow"; then
	pass logs_follow_gives_back_carriage_returns_exactly
else
	fail logs_follow_gives_back_carriage_returns_exactly "$(od -c "$T/cr.follow" | head -5)"
fi
curl -s -N --max-time 20 -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/$CR/log/stream" >"$T/cr.sse"
expect_eq sse_sends_no_carriage_return_inside_a_data_line 0 "$(tr -dc '\r' <"$T/cr.sse" | wc -c)"

# ---- API errors: status and a JSON error each ---------------------------------------------
api_error() { # NAME STATUS CURL-ARGS...
	local name=$1 want=$2
	shift 2
	local code
	code=$(curl -s -o "$T/body" -w '%{http_code}' "$@")
	if [ "$code" = "$want" ] && jq -e '.error | strings' "$T/body" >/dev/null 2>&1; then
		pass "$name"
	else fail "$name" "status $code, body $(head -c 200 "$T/body")"; fi
}
api_error api_no_token_is_401 401 "$VMCI_SERVER/api/v1/runs"
api_error api_wrong_token_is_401 401 -H "Authorization: Bearer vmci_nope" "$VMCI_SERVER/api/v1/runs"
api_error api_bad_json_is_400 400 -H "$AUTH" -X POST -d '{"repo": ' "$VMCI_SERVER/api/v1/runs"
api_error api_unknown_run_is_404 404 -H "$AUTH" "$VMCI_SERVER/api/v1/runs/424242"
api_error api_unknown_job_is_404 404 -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/424242/log"
api_error api_unknown_repo_is_404 404 -H "$AUTH" -X POST -d '{"repo": "nope"}' "$VMCI_SERVER/api/v1/runs"
head -c 2000000 /dev/zero | tr '\0' a >"$T/big"
api_error api_oversized_body_is_413 413 -H "$AUTH" -X POST --data-binary @"$T/big" "$VMCI_SERVER/api/v1/runs"

# ---- cancel of a running run: cancelled, and its VM reverted for the next job ----------------
commit_pipeline cancel <<'YML'
jobs:
  long:
    image: busybox-x86_64
    resources: { memory: 256M }
    steps:
      - name: dirty
        run: echo left-behind >/tmp/left-behind; echo started; sleep 60
YML
RUN4=$(push cancel)
LONG=$(job_id "${RUN4:-0}" long)
wait_log "$LONG" started 90 || fail cancel_job_started "job $LONG never printed 'started'"
VM_BEFORE=$(pgrep -f "qemu-system-x86_64.*$TMPDIR" | sort | tr '\n' ' ')
"$VMCI" cancel "${RUN4:-0}" 2>/dev/null
expect_eq cancel_of_a_running_run_exits_0 0 $?
expect_eq cancelled_run_ends_cancelled cancelled "$(wait_run "${RUN4:-0}" 30)"
expect_eq cancelled_job_is_cancelled cancelled "$(api "jobs/$LONG" | jq -r .status)"
"$VMCI" status "${RUN4:-0}" >/dev/null
expect_eq status_of_a_cancelled_run_exits_1 1 $?
"$VMCI" cancel 424242 2>/dev/null
expect_eq cancel_of_an_unknown_run_exits_2 2 $?
commit_pipeline after-cancel <<'YML'
jobs:
  next:
    image: busybox-x86_64
    resources: { memory: 256M }
    steps:
      - name: clean
        run: test ! -e /tmp/left-behind && echo clean
YML
RUN5=$(push after-cancel)
expect_eq pool_serves_the_next_job_after_a_cancel success "$(wait_run "${RUN5:-0}" 60)"
expect_eq cancelled_jobs_vm_was_reverted_not_replaced "$VM_BEFORE" \
	"$(pgrep -f "qemu-system-x86_64.*$TMPDIR" | sort | tr '\n' ' ')"

# ---- kill -9 while 4 jobs run and 4 are queued, then a restart -----------------------------
stop_serve
commit_pipeline many <<'YML'
jobs:
  many:
    image: busybox-x86_64
    resources: { memory: 256M }
    strategy:
      matrix:
        n: [1, 2, 3, 4, 5, 6, 7, 8]
    steps:
      - name: ticks
        run: |
          # The first four (claimed first) run until the kill; the rest, and reruns, are short.
          n=2; [ "$VMCI_ATTEMPT" = 1 ] && [ ${{ matrix.n }} -le 4 ] && n=120
          i=0; while [ $i -lt $n ]; do i=$((i + 1)); echo "job ${{ matrix.n }} attempt $VMCI_ATTEMPT tick $i"; sleep 0.5; done
YML
start_serve --capacity 4
RUN7=$(push many)
M1=$(job_id "${RUN7:-0}" "many (1)")
"$VMCI" logs -f "$M1" >"$T/follow.out" 2>/dev/null &
FOLLOW_PID=$!
running=0
for _ in $(seq 240); do
	running=$(api "runs/${RUN7:-0}" | jq '[.jobs[] | select(.status=="running" and .log_len > 0)] | length')
	[ "$running" = 4 ] && break
	sleep 0.5
done
wait_log "$M1" "tick 3" 30
STATES=$(api "runs/${RUN7:-0}" | jq -r '[.jobs[].status] | sort | join(" ")')
expect_eq kill9_while_4_run_and_4_are_queued "queued queued queued queued running running running running" "$STATES"
OLD_QEMUS=$(qemus)
kill -9 "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null
SERVE_PID=""
sleep 0.3
cp "$T/follow.out" "$T/follow.at-kill"
# On the same port, so that the follower finds the new service. The grace is for the SIGTERM below.
start_serve --capacity 4 --listen "127.0.0.1:$PORT" --grace 8s
# Killed with the service (a zombie until init reaps it counts as gone), or by the restart.
left=""
for _ in $(seq 50); do
	left=""
	for p in $OLD_QEMUS; do
		case $(ps -o stat= -p "$p" 2>/dev/null) in "" | Z*) ;; *) left="$left $p" ;; esac
	done
	[ -z "$left" ] && break
	sleep 0.1
done
expect_eq kill9_leaves_no_qemu_of_the_dead_service "" "$left"
expect_eq kill9_all_8_jobs_finish_after_restart success "$(wait_run "${RUN7:-0}" 180)"
ATTEMPTS=$(api "runs/${RUN7:-0}" | jq -r '[.jobs[] | "\(.status)/\(.attempt)"] | sort | join(" ")')
expect_eq kill9_running_jobs_reran_as_attempt_2 \
	"success/1 success/1 success/1 success/1 success/2 success/2 success/2 success/2" "$ATTEMPTS"
expect_eq kill9_lost_attempt_recorded "error host restarted" \
	"$(api "jobs/$M1" | jq -r '.attempts[0] | "\(.status) \(.reason)"')"
api "jobs/$M1/log" >"$T/m1.log"
RECEIVED=$(stat -c %s "$T/follow.at-kill")
if [ "$RECEIVED" -gt 0 ] && cmp -s -n "$RECEIVED" "$T/follow.at-kill" "$T/m1.log"; then
	pass kill9_keeps_every_byte_a_follower_received
else
	fail kill9_keeps_every_byte_a_follower_received "$RECEIVED bytes received; the log does not start with them"
fi
# The follower reconnected to the new service and printed the whole log, once.
for _ in $(seq 100); do kill -0 "$FOLLOW_PID" 2>/dev/null || break; sleep 0.1; done
kill "$FOLLOW_PID" 2>/dev/null
wait "$FOLLOW_PID"
expect_eq logs_follow_across_a_restart_exits_0 0 $?
FOLLOW_PID=""
if cmp -s "$T/follow.out" "$T/m1.log"; then pass logs_follow_across_a_restart_prints_every_byte_once
else fail logs_follow_across_a_restart_prints_every_byte_once "$(stat -c %s "$T/follow.out") bytes followed, $(stat -c %s "$T/m1.log") in the log"; fi

# ---- SIGTERM: no more claims; within --grace a job finishes, past it one is requeued -----------
# On the service restarted above: its pool's 4 VMs are warm, so both jobs start at once.
commit_pipeline term <<'YML'
jobs:
  quick:
    image: busybox-x86_64
    resources: { memory: 256M }
    steps:
      - run: echo started; sleep 4; echo quick-done
  slow:
    image: busybox-x86_64
    resources: { memory: 256M }
    steps:
      - run: echo started; if [ "$VMCI_ATTEMPT" = 1 ]; then sleep 120; fi; echo slow-done
  waiting:
    needs: [quick]
    image: busybox-x86_64
    resources: { memory: 256M }
    steps:
      - run: echo waited
YML
RUN6=$(push term)
QUICK=$(job_id "${RUN6:-0}" quick)
SLOW=$(job_id "${RUN6:-0}" slow)
WAITING=$(job_id "${RUN6:-0}" waiting)
wait_log "$QUICK" started 60 && wait_log "$SLOW" started 30 ||
	fail term_jobs_started "quick or slow never started"
expect_eq sigterm_comes_while_both_jobs_run "running running" \
	"$(api "jobs/$QUICK" | jq -r .status) $(api "jobs/$SLOW" | jq -r .status)"
TERM_AT=$(date +%s%N)
kill -TERM "$SERVE_PID"
# The API answers during the grace period: the quick job is seen finishing.
QUICK_DURING=""
for _ in $(seq 40); do
	QUICK_DURING=$(api "jobs/$QUICK" | jq -r .status)
	[ "$QUICK_DURING" = success ] && break
	sleep 0.25
done
expect_eq sigterm_api_answers_while_jobs_finish success "$QUICK_DURING"
for _ in $(seq 300); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
STOPPED_MS=$((($(date +%s%N) - TERM_AT) / 1000000))
wait "$SERVE_PID" 2>/dev/null
expect_eq sigterm_exits_0 0 $?
SERVE_PID=""
if [ "$STOPPED_MS" -ge 7000 ] && [ "$STOPPED_MS" -lt 20000 ]; then pass sigterm_waits_the_grace_then_stops
else fail sigterm_waits_the_grace_then_stops "stopped ${STOPPED_MS} ms after SIGTERM (grace 8s)"; fi
expect_eq sigterm_leaves_no_qemu "" "$(qemus)"
RESTART_AT=$(date -u +%Y-%m-%dT%H:%M:%S)
start_serve --capacity 2
expect_eq sigterm_run_finishes_after_restart success "$(wait_run "${RUN6:-0}" 90)"
expect_eq job_within_grace_finished_in_one_attempt "1 success" "$(api "jobs/$QUICK" | jq -r '"\(.attempt) \(.status)"')"
expect_eq job_past_grace_reran_as_attempt_2 "2 success" "$(api "jobs/$SLOW" | jq -r '"\(.attempt) \(.status)"')"
expect_eq job_past_grace_kept_its_first_attempt "error host stopped" \
	"$(api "jobs/$SLOW" | jq -r '.attempts[0] | "\(.status) \(.reason)"')"
# quick's success made waiting claimable during the grace period: it must have waited for the restart.
expect_eq no_claim_after_sigterm "1 true" \
	"$(api "jobs/$WAITING" | jq -r --arg t "$RESTART_AT" '"\(.attempt) \(.started_at >= $t)"')"

# ---- --cold: a VM booted for the job and gone after it, none kept warm -------------------------
stop_serve
start_serve --cold
RUN9=$("$VMCI" submit widget --ref refs/heads/after-cancel)
expect_eq cold_serve_runs_a_job success "$(wait_run "${RUN9:-0}" 90)"
for _ in $(seq 50); do [ -z "$(qemus)" ] && break; sleep 0.1; done
expect_eq cold_serve_keeps_no_vm_after_the_job "" "$(qemus)"

# ---- the end: a graceful stop leaves no QEMU -------------------------------------------------
stop_serve
sleep 0.5
expect_eq serve_leaves_no_qemu "" "$(qemus)"
