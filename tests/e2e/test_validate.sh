#!/usr/bin/env bash
# `vmci validate` and `vmci plan` as a user runs them: every error in compiler
# form with exit 2, the expanded jobs as a table and as JSON.
set -u
. "$(dirname "$0")/lib.sh"
fixtures=$(cd "$(dirname "$0")/../fixtures/pipelines" && pwd)

cd "$E2E_TMP"
"$VMCI" validate >/dev/null 2>"$E2E_TMP/err"
rc=$?
if [ "$rc" = 2 ] && grep -q ".vmci.yml" "$E2E_TMP/err"; then pass validate_without_a_file_says_so
else fail validate_without_a_file_says_so "rc=$rc: $(cat "$E2E_TMP/err")"; fi

"$VMCI" validate "$fixtures/invalid.yml" >/dev/null 2>"$E2E_TMP/err"
expect_eq validate_invalid_exits_2 2 "$?"
if grep -q "invalid.yml:15:5: error: unknown key 'stpes' in job 'build' (did you mean 'steps'?)" "$E2E_TMP/err"
then pass validate_names_file_line_column_and_suggests
else fail validate_names_file_line_column_and_suggests "$(cat "$E2E_TMP/err")"; fi
count=$(grep -c ': error: ' "$E2E_TMP/err")
if [ "$count" -ge 4 ]; then pass validate_prints_every_error
else fail validate_prints_every_error "only $count errors: $(cat "$E2E_TMP/err")"; fi

cp "$fixtures/example.yml" .vmci.yml
"$VMCI" validate >/dev/null 2>"$E2E_TMP/err"
expect_eq validate_valid_file_exits_0 0 "$?"

"$VMCI" plan --json >"$E2E_TMP/plan.json" 2>"$E2E_TMP/err"
rc=$?
jobs=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["jobs"]))' "$E2E_TMP/plan.json" 2>/dev/null)
if [ "$rc" = 0 ] && [ -n "$jobs" ] && [ "$jobs" -gt 1 ]; then pass plan_json_lists_expanded_jobs
else fail plan_json_lists_expanded_jobs "rc=$rc jobs=$jobs: $(cat "$E2E_TMP/err")"; fi

"$VMCI" plan >"$E2E_TMP/plan.txt" 2>&1
if [ $? = 0 ] && grep -q "build (" "$E2E_TMP/plan.txt"; then pass plan_table_names_matrix_jobs
else fail plan_table_names_matrix_jobs "$(cat "$E2E_TMP/plan.txt")"; fi
