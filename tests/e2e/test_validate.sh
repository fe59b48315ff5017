#!/usr/bin/env bash
# `vmci validate` and `vmci plan` as a user runs them: every error in compiler
# form with exit 2, the expanded jobs as a table and as JSON.
set -u
. "$(dirname "$0")/lib.sh"
fixtures=$(cd "$(dirname "$0")/../fixtures/pipelines" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)

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

# ---- what a run could not run is refused here, with its position ------------------------
printf 'jobs:\n  a:\n    image: ../../etc/passwd\n    steps: [{run: make}]\n' >bad-image.yml
"$VMCI" validate bad-image.yml >/dev/null 2>"$E2E_TMP/err"
rc=$?
if [ "$rc" = 2 ] && grep -qF "bad-image.yml:3:12: error: image '../../etc/passwd' of job 'a' is not an image name" "$E2E_TMP/err"
then pass validate_refuses_an_image_outside_the_store
else fail validate_refuses_an_image_outside_the_store "rc=$rc: $(cat "$E2E_TMP/err")"; fi
"$VMCI" plan bad-image.yml >/dev/null 2>"$E2E_TMP/err"
expect_eq plan_refuses_an_image_outside_the_store 2 "$?"

{
	printf 'jobs:\n  a:\n    image: busybox-x86_64\n    steps:\n      - run: |\n'
	for i in $(seq 1 25000); do echo "          echo line $i of a script too long to run ......."; done
} >long-script.yml
"$VMCI" validate long-script.yml >/dev/null 2>"$E2E_TMP/err"
rc=$?
if [ "$rc" = 2 ] && grep -qF "long-script.yml:5:14: error: run of step 1 of job 'a' is " "$E2E_TMP/err" &&
	grep -qF "more than the 1024 KiB a step's script may have" "$E2E_TMP/err"
then pass validate_refuses_a_script_past_the_limit_with_its_position
else fail validate_refuses_a_script_past_the_limit_with_its_position "rc=$rc: $(head -c 600 "$E2E_TMP/err")"; fi

# ---- packages a Debian image's suite does not have, before any VM --------------------------
# A home of the test's own holds bookworm's package lists as vmci keeps them (apt's
# Packages format, in cache/apt/bookworm-amd64), so the check does not depend on what
# the user's cache holds; debian-12's recipe says it is installed from bookworm.
pkg_home=$E2E_TMP/pkg-home
lists=$pkg_home/cache/apt/bookworm-amd64/state/lists
mkdir -p "$lists"
printf 'Package: hello\nVersion: 2.10-3\n\nPackage: mawk\nProvides: awk\n\n' \
	>"$lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"
printf 'jobs:\n  a:\n    image: debian-12\n    packages:\n      - hello\n      - awk\n      - helo\n    steps: [{run: hello}]\n' >pkgs.yml
start=$(date +%s%N)
VMCI_HOME=$pkg_home "$VMCI" validate pkgs.yml >/dev/null 2>"$E2E_TMP/err"
rc=$? took=$(( ($(date +%s%N) - start) / 1000000 ))
if [ "$rc" = 2 ] && grep -qF "pkgs.yml:7:9: error: package 'helo' of job 'a' is not in Debian bookworm amd64 (package lists of " "$E2E_TMP/err" &&
	grep -qF "which image 'debian-12' is installed from: check its name" "$E2E_TMP/err" &&
	[ "$(grep -c ': error: ' "$E2E_TMP/err")" = 1 ]
then pass validate_refuses_a_package_the_images_suite_does_not_have
else fail validate_refuses_a_package_the_images_suite_does_not_have "rc=$rc: $(cat "$E2E_TMP/err")"; fi
echo "# validate with a package list check: ${took} ms"
sed -i 's/      - helo/      - mawk/' pkgs.yml
VMCI_HOME=$pkg_home "$VMCI" validate pkgs.yml >/dev/null 2>"$E2E_TMP/err"
expect_eq validate_accepts_packages_and_what_they_provide 0 "$?"
sed -i 's/      - mawk/      - helo/' pkgs.yml
# An image whose suite vmci has no lists of is not judged: the build will tell.
sed 's/debian-12/deb12-imported/' pkgs.yml >pkgs-imported.yml
VMCI_HOME=$pkg_home "$VMCI" validate pkgs-imported.yml >/dev/null 2>"$E2E_TMP/err"
expect_eq validate_leaves_packages_of_an_image_without_lists_to_the_build 0 "$?"
# vmci run stops at the same error, before building or booting anything.
(
	new_repo "$E2E_TMP/pkg-repo" && cp "$E2E_TMP/pkgs.yml" .vmci.yml && git add -A && git commit -qm init &&
		VMCI_HOME=$pkg_home "$VMCI" run >"$E2E_TMP/out" 2>&1
	echo "rc=$?" >>"$E2E_TMP/out"
)
if grep -q '^rc=2$' "$E2E_TMP/out" && grep -qF ".vmci.yml:7:9: error: package 'helo' of job 'a'" "$E2E_TMP/out" &&
	! grep -q 'building\|debootstrap' "$E2E_TMP/out" && [ ! -d "$pkg_home/images" ]
then pass run_refuses_an_unknown_package_before_any_image_or_vm
else fail run_refuses_an_unknown_package_before_any_image_or_vm "$(cat "$E2E_TMP/out")"; fi

# ---- examples/sweep: the nightly sweep over the catalog ------------------------------------
sweep=$repo/examples/sweep
recipes=$repo/images/recipes
"$VMCI" validate "$sweep/.vmci.yml" >/dev/null 2>"$E2E_TMP/err"
expect_eq sweep_example_is_valid 0 "$?"
"$VMCI" plan --json "$sweep/.vmci.yml" >"$E2E_TMP/sweep.json" 2>"$E2E_TMP/err"
# Every recipe with a root file system of its own (a full OS, with a compiler) is a row.
want=$(grep -l '^  debootstrap:' "$recipes"/*.yml | xargs -n1 basename | sed 's/\.yml$//' | sort | tr '\n' ' ')
got=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(sorted(j["image"] for j in d["jobs"])) + " ")' "$E2E_TMP/sweep.json" 2>/dev/null)
if [ -n "$got" ] && [ "$got" = "$want" ]; then pass sweep_example_has_a_row_for_every_os_of_the_catalog
else fail sweep_example_has_a_row_for_every_os_of_the_catalog "want '$want', got '$got': $(cat "$E2E_TMP/err")"; fi
sched=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["on"]["push"], d["on"]["schedules"])' "$E2E_TMP/sweep.json" 2>/dev/null)
expect_eq sweep_example_runs_nightly_not_on_pushes "False ['0 3 * * *']" "$sched"
