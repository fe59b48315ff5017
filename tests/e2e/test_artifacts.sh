#!/usr/bin/env bash
# What `vmci run` copies out of a job's VM, and what a step carries in:
# a 500 MB sparse file stays sparse on the host, a symlink loop comes
# back as symlinks with exact counts, a path that matches nothing is a
# warning, a job past its max-files fails and says where it stopped, and
# a 100 KB script runs (it travels as a file).
set -u
. "$(dirname "$0")/lib.sh"

export NO_COLOR=1
repo=$E2E_TMP/repo
out=$E2E_TMP/out
new_repo "$repo" || exit 1

# A script of about 100 KB: comment lines, then one that reports its own size.
script=$E2E_TMP/long.sh
{
	echo "echo long script starts"
	for i in $(seq 1 1400); do
		echo "# filler line $i ........................................................."
	done
	echo 'echo "long script of $(wc -c <"$0") bytes ran"'
} >"$script"

{
	cat <<'EOF'
jobs:
  collect:
    image: busybox-x86_64
    steps:
      - run: |
          mkdir -p out loop
          truncate -s 500M out/big.img
          echo hi >out/small.txt
          cd loop && echo f >f && ln -s . self && ln -s .. up && ln -s b a && ln -s a b
    artifacts:
      - out/
      - loop/*
      - missing/
  capped:
    image: busybox-x86_64
    steps:
      - run: mkdir -p many && for i in $(seq 10 29); do echo $i >many/f$i; done
    artifacts:
      paths: [many/]
      max-files: 5
  long:
    image: busybox-x86_64
    steps:
      - run: |
EOF
	sed 's/^/          /' "$script"
} >.vmci.yml
git add -A && git commit -qm pipeline

start=$(date +%s)
"$VMCI" run --logs -j 2 >"$out" 2>&1
rc=$?
expect_eq run_with_incomplete_artifacts_exits_1 1 "$rc"
art=$repo/.vmci/runs/latest/artifacts # this run's own (.vmci/runs/ID)

# ---- sparse ---------------------------------------------------------------------------
big=$art/collect/out/big.img
if [ -f "$big" ] && [ "$(stat -c %s "$big")" = 524288000 ] &&
	[ $(($(stat -c %b "$big") * $(stat -c %B "$big"))) -lt 1048576 ]; then
	pass artifacts_sparse_500mb_file_stays_sparse_on_the_host
else
	fail artifacts_sparse_500mb_file_stays_sparse_on_the_host "$(stat -c '%s bytes, %b blocks' "$big" 2>&1)"
fi
if [ "$(cat "$art/collect/out/small.txt" 2>/dev/null)" = hi ] && [ ! -e "$art/collect/out/out" ]; then
	pass artifacts_directory_with_a_slash_lands_once
else
	fail artifacts_directory_with_a_slash_lands_once "$(cd "$art" 2>/dev/null && find . | head)"
fi

# ---- symlinks ------------------------------------------------------------------------
links_ok=yes
for l in "self ." "up .." "a b" "b a"; do
	set -- $l
	[ -L "$art/collect/loop/$1" ] && [ "$(readlink "$art/collect/loop/$1")" = "$2" ] || links_ok="no ($1)"
done
if [ "$links_ok" = yes ] && [ -f "$art/collect/loop/f" ] && [ "$(find "$art/collect" | wc -l)" -le 12 ]; then
	pass artifacts_symlink_loop_is_stored_as_symlinks
else
	fail artifacts_symlink_loop_is_stored_as_symlinks "$links_ok: $(cd "$art" 2>/dev/null && find . | head -20)"
fi
if grep -qF "[collect] artifacts: 3 files, 1 directory, 4 symlinks, 500.0 MiB (sparse: " "$out" &&
	grep -q "^collect  *passed" "$out"; then
	pass artifacts_summary_counts_exactly
else
	fail artifacts_summary_counts_exactly "$(grep -E 'collect' "$out" | tail -5)"
fi
if grep -qF "[collect] artifacts: 'missing/' matched nothing in the guest" "$out"; then
	pass artifacts_path_matching_nothing_is_a_warning
else
	fail artifacts_path_matching_nothing_is_a_warning "$(grep -F '[collect]' "$out" | tail -5)"
fi

# ---- limits --------------------------------------------------------------------------
copied=$(find "$art/capped/many" -type f 2>/dev/null | wc -l)
if grep -qF "[capped] artifacts: stopped at 'many/f14' (past max-files: 5 entries)" "$out" &&
	grep -q "^capped  *failed" "$out" && [ "$copied" = 4 ]; then
	pass artifacts_past_max_files_fail_the_job_and_say_where
else
	fail artifacts_past_max_files_fail_the_job_and_say_where "$copied files; $(grep -F 'capped' "$out" | tail -5)"
fi
if grep -qF "capped: its artifacts could not all be copied: artifacts incomplete: stopped at" "$out"; then
	pass artifacts_limit_is_in_the_summary
else
	fail artifacts_limit_is_in_the_summary "$(tail -12 "$out")"
fi

# ---- a long script -------------------------------------------------------------------
size=$(wc -c <"$script")
if grep -qF "[long] long script of $size bytes ran" "$out" && grep -q "^long  *passed" "$out"; then
	pass script_of_100kb_runs
else
	fail script_of_100kb_runs "$(grep -F 'long' "$out" | tail -5)"
fi

elapsed=$(($(date +%s) - start))
if [ "$elapsed" -lt 120 ]; then pass artifacts_run_is_quick
else fail artifacts_run_is_quick "took ${elapsed}s"; fi
