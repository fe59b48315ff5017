#!/usr/bin/env bash
# vmci serve end to end, as a user: a token, the service on a free loopback
# port with its own SQLite store (the image store stays $VMCI_HOME), a bare
# repository with the installed hook, pushes of a two-job pipeline (one job
# needs the other) on busybox-x86_64, the API's errors, the log stream, and
# kill -9 of the service while a job runs.
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
stop_serve() {
	if [ -n "$SERVE_PID" ]; then
		kill -TERM "$SERVE_PID" 2>/dev/null
		for _ in $(seq 100); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$SERVE_PID" 2>/dev/null
		wait "$SERVE_PID" 2>/dev/null
		SERVE_PID=""
	fi
}
trap 'stop_serve; rm -rf "$T"' EXIT

cat >"$T/serve.yml" <<YML
listen: 127.0.0.1:0
db: $DB
host: { name: e2e, capacity: 1 }
repos:
  - { name: widget, url: $T/widget.git }
YML

# start_serve: starts vmci serve in the background and sets PORT from its first line.
start_serve() {
	: >"$T/serve.log"
	"$VMCI" serve --config "$T/serve.yml" --grace 2s 2>>"$T/serve.log" &
	SERVE_PID=$!
	PORT=""
	for _ in $(seq 100); do
		PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$T/serve.log")
		[ -n "$PORT" ] && break
		sleep 0.1
	done
	export VMCI_SERVER=http://127.0.0.1:$PORT
}

# wait_run RUN SECONDS: waits until the run has finished; prints its status.
wait_run() {
	local st=""
	for _ in $(seq $(( $2 * 2 ))); do
		st=$(curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/runs/$1" | jq -r .status)
		case $st in queued|running|"") sleep 0.5 ;; *) break ;; esac
	done
	echo "$st"
}

# ---- token and service ----------------------------------------------------------
TOKEN=$("$VMCI" token create e2e --db "$DB")
case $TOKEN in vmci_*) pass token_create_prints_only_the_token ;;
*) fail token_create_prints_only_the_token "got '$TOKEN'" ;; esac
echo "$TOKEN" >"$T/token"
export VMCI_TOKEN=$TOKEN
AUTH="Authorization: Bearer $TOKEN"

start_serve
expect_eq serve_listens "true" "$(curl -s "$VMCI_SERVER/healthz" | jq -r .ok)"

# ---- a push through the hook ---------------------------------------------------------
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
    image: busybox-x86_64
    resources: { memory: 256M }
    steps:
      - name: greet
        run: echo "hello from $(cat greeting.txt)"; mkdir -p out; echo built >out/result.txt
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
RUN=$(git push -q origin main 2>&1 | sed -n 's/.*vmci: run \([0-9]*\) for.*/\1/p')
cd - >/dev/null
if [ -n "$RUN" ]; then pass push_creates_a_run; else fail push_creates_a_run "no run id in the push's output"; RUN=0; fi

expect_eq pushed_run_succeeds success "$(wait_run "$RUN" 120)"
RUN_JSON=$(curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/runs/$RUN")
BUILD=$(echo "$RUN_JSON" | jq -r '.jobs[] | select(.name=="build") | .id')
TEST=$(echo "$RUN_JSON" | jq -r '.jobs[] | select(.name=="test") | .id')
expect_eq run_has_both_jobs_succeeded "success success" "$(echo "$RUN_JSON" | jq -r '[.jobs[].status] | join(" ")')"
expect_eq run_records_trigger_push push "$(echo "$RUN_JSON" | jq -r .trigger)"

LOG=$(curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/$BUILD/log")
case $LOG in *"hello from widget"*) pass log_via_api_has_the_output ;;
*) fail log_via_api_has_the_output "log: $LOG" ;; esac
out=$("$VMCI" logs "$TEST"); rc=$?
expect_eq vmci_logs_exits_0 0 "$rc"
case $out in *"testing refs/heads/main"*) pass vmci_logs_prints_the_log ;;
*) fail vmci_logs_prints_the_log "got: $out" ;; esac
expect_eq artifact_indexed "out/result.txt" "$(curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/$BUILD/artifacts" | jq -r '.artifacts[0].path')"
expect_eq artifact_served "built" "$(curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/$BUILD/artifacts/out/result.txt")"

"$VMCI" status "$RUN" >/dev/null; expect_eq status_of_a_passed_run_exits_0 0 $?
"$VMCI" runs | grep -q "^$RUN .*success"; expect_eq runs_lists_the_run 0 $?
"$VMCI" status 99999 2>/dev/null; expect_eq status_of_an_unknown_run_exits_2 2 $?
VMCI_SERVER=http://127.0.0.1:1 "$VMCI" runs 2>/dev/null; expect_eq unreachable_server_exits_3 3 $?

# ---- SSE resume: exactly the bytes after the offset ---------------------------------------
FULL=$(curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/$BUILD/log"; echo x)
FULL=${FULL%x}
OFF=10
SSE=$(curl -s -N --max-time 20 -H "$AUTH" -H "Last-Event-ID: $OFF" "$VMCI_SERVER/api/v1/jobs/$BUILD/log/stream" |
	awk 'BEGIN{inev=0; ev=""} /^event: /{ev=substr($0,8)} /^data: /{ if (ev=="") { if (inev) printf "\n"; printf "%s", substr($0,7); inev=1 } ; next} /^$/{inev=0; ev=""}'; echo x)
SSE=${SSE%x}
expect_eq sse_resume_gives_exactly_the_remaining_bytes "${FULL:$OFF}" "$SSE"
curl -s -N --max-time 20 -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/$BUILD/log/stream" | grep -q '^event: end'
expect_eq sse_ends_with_an_end_event 0 $?

# ---- a failing step ---------------------------------------------------------------------
cd "$T/work"
sed -i 's/echo built >out\/result.txt/echo built >out\/result.txt; echo about to fail; exit 7/' .vmci.yml
git commit -qam fails
RUN2=$(git push -q origin main 2>&1 | sed -n 's/.*vmci: run \([0-9]*\) for.*/\1/p')
cd - >/dev/null
expect_eq failing_step_fails_the_run failure "$(wait_run "${RUN2:-0}" 120)"
J=$(curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/runs/${RUN2:-0}")
expect_eq failed_job_names_its_step "failure greet 7" "$(echo "$J" | jq -r '.jobs[] | select(.name=="build") | "\(.status) \(.failed_step) \(.exit_code)"')"
expect_eq dependent_of_a_failure_is_skipped skipped "$(echo "$J" | jq -r '.jobs[] | select(.name=="test") | .status')"
"$VMCI" status "${RUN2:-0}" >/dev/null; expect_eq status_of_a_failed_run_exits_1 1 $?

# ---- API errors: status and a JSON error each ---------------------------------------------
api_error() { # NAME STATUS CURL-ARGS...
	local name=$1 want=$2; shift 2
	local body code
	body=$(curl -s -o "$T/body" -w '%{http_code}' "$@")
	code=$body
	if [ "$code" = "$want" ] && jq -e '.error | strings' "$T/body" >/dev/null 2>&1; then pass "$name"
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

# ---- kill -9 while a job runs, then a restart ---------------------------------------------
cd "$T/work"
git checkout -q -b slow
cat >.vmci.yml <<'YML'
jobs:
  slow:
    image: busybox-x86_64
    resources: { memory: 256M }
    steps:
      - name: nap
        run: echo napping; sleep 6; echo woke
YML
git commit -qam slow
RUN3=$(git push -q origin slow 2>&1 | sed -n 's/.*vmci: run \([0-9]*\) for.*/\1/p')
cd - >/dev/null
SLOW=$(curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/runs/${RUN3:-0}" | jq -r '.jobs[0].id')
for _ in $(seq 120); do
	curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/$SLOW/log" | grep -q napping && break
	sleep 0.5
done
BEFORE=$(curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/$SLOW/log"; echo x)
kill -9 "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null; SERVE_PID=""
start_serve
expect_eq killed_job_finishes_after_restart success "$(wait_run "${RUN3:-0}" 120)"
expect_eq killed_job_reran_as_attempt_2 2 "$(curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/$SLOW" | jq -r .attempt)"
AFTER=$(curl -s -H "$AUTH" "$VMCI_SERVER/api/v1/jobs/$SLOW/log"; echo x)
BEFORE=${BEFORE%x}
case $AFTER in "$BEFORE"*) pass log_written_before_the_kill_is_kept ;;
*) fail log_written_before_the_kill_is_kept "the log no longer starts with what was read before" ;; esac

# ---- SIGTERM: graceful stop, no QEMU left ----------------------------------------------------
stop_serve
sleep 0.5
expect_eq serve_leaves_no_qemu "" "$(pgrep -f "qemu-system.*$TMPDIR" || true)"
