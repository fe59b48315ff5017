#!/usr/bin/env bash
# `vmci image` as a user runs it, in a store of its own (sharing only the
# download cache): import a root filesystem, list and inspect it, pull a
# disk from a local HTTP server (a good and a wrong checksum), remove, gc.
set -u
. "$(dirname "$0")/lib.sh"

real_home=${VMCI_HOME:-$HOME/.cache/vmci}
export VMCI_HOME=$E2E_TMP/home
mkdir -p "$VMCI_HOME"
[ -d "$real_home/cache" ] && ln -s "$real_home/cache" "$VMCI_HOME/cache"

# A tiny root filesystem: one file is enough for an image's disk.
mkdir -p "$E2E_TMP/rootfs/etc"
echo 'PRETTY_NAME="e2e rootfs"' >"$E2E_TMP/rootfs/etc/os-release"
tar -C "$E2E_TMP/rootfs" -czf "$E2E_TMP/rootfs.tar.gz" .

"$VMCI" image import e2e-root "$E2E_TMP/rootfs.tar.gz" >"$E2E_TMP/out" 2>"$E2E_TMP/err"
rc=$?
expect_eq image_import_of_a_tarball_succeeds 0 "$rc"
[ "$rc" = 0 ] || cat "$E2E_TMP/err"

"$VMCI" image ls --json >"$E2E_TMP/ls.json" 2>"$E2E_TMP/err"
names=$(python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
rows=d if isinstance(d,list) else d.get("images",[])
print(" ".join(sorted(r.get("name") or "" for r in rows)))' "$E2E_TMP/ls.json" 2>/dev/null)
case " $names " in
*" e2e-root "*) pass image_ls_json_lists_the_import ;;
*) fail image_ls_json_lists_the_import "names: '$names' $(cat "$E2E_TMP/err")" ;;
esac

"$VMCI" image ls >"$E2E_TMP/ls.txt" 2>&1
if grep -q '^NAME' "$E2E_TMP/ls.txt" && grep -q 'e2e-root' "$E2E_TMP/ls.txt"; then pass image_ls_prints_a_table
else fail image_ls_prints_a_table "$(cat "$E2E_TMP/ls.txt")"; fi

"$VMCI" image inspect e2e-root >"$E2E_TMP/inspect.json" 2>"$E2E_TMP/err"
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["name"]=="e2e-root" and d["digest"].startswith("sha256:")' "$E2E_TMP/inspect.json" 2>/dev/null
then pass image_inspect_prints_json
else fail image_inspect_prints_json "$(head -c 400 "$E2E_TMP/inspect.json") $(cat "$E2E_TMP/err")"; fi

"$VMCI" image inspect no-such-image >/dev/null 2>"$E2E_TMP/err"
rc=$?
if [ "$rc" != 0 ] && grep -q "no-such-image" "$E2E_TMP/err"; then pass image_inspect_unknown_names_it
else fail image_inspect_unknown_names_it "rc=$rc $(cat "$E2E_TMP/err")"; fi

# Pull over HTTP from loopback: a raw ext4 disk.
mkdir -p "$E2E_TMP/www"
truncate -s 8M "$E2E_TMP/www/disk.raw"
mke2fs -q -t ext4 -d "$E2E_TMP/rootfs" "$E2E_TMP/www/disk.raw" >/dev/null 2>&1
sum=$(sha256sum "$E2E_TMP/www/disk.raw" | cut -d' ' -f1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$E2E_TMP/www" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$E2E_TMP"' EXIT
for _ in $(seq 1 50); do
	python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
	sleep 0.1
done
url=http://127.0.0.1:$port/disk.raw

"$VMCI" image pull "$url" --sha256 "$(printf '%064d' 0)" --name e2e-bad >/dev/null 2>"$E2E_TMP/err"
rc=$?
if [ "$rc" != 0 ] && grep -qi "checksum\|sha256" "$E2E_TMP/err" && ! "$VMCI" image inspect e2e-bad >/dev/null 2>&1
then pass image_pull_with_a_wrong_checksum_publishes_nothing
else fail image_pull_with_a_wrong_checksum_publishes_nothing "rc=$rc $(cat "$E2E_TMP/err")"; fi

"$VMCI" image pull "$url" --sha256 "$sum" --name e2e-pulled >/dev/null 2>"$E2E_TMP/err"
rc=$?
if [ "$rc" = 0 ] && "$VMCI" image inspect e2e-pulled >/dev/null 2>&1; then pass image_pull_publishes_a_verified_disk
else fail image_pull_publishes_a_verified_disk "rc=$rc $(cat "$E2E_TMP/err")"; fi

"$VMCI" image pull "http://127.0.0.1:$port/missing.raw" --sha256 "$sum" --name e2e-404 >/dev/null 2>"$E2E_TMP/err"
rc=$?
if [ "$rc" != 0 ] && grep -q "404" "$E2E_TMP/err"; then pass image_pull_404_says_so
else fail image_pull_404_says_so "rc=$rc $(cat "$E2E_TMP/err")"; fi

# rm drops the name; gc then frees what nothing references.
"$VMCI" image rm e2e-pulled >/dev/null 2>"$E2E_TMP/err"
expect_eq image_rm_succeeds 0 "$?"
"$VMCI" image gc >"$E2E_TMP/gc.txt" 2>&1
rc=$?
if [ "$rc" = 0 ] && "$VMCI" image inspect e2e-root >/dev/null 2>&1 && ! "$VMCI" image inspect e2e-pulled >/dev/null 2>&1
then pass image_gc_keeps_named_and_frees_the_rest
else fail image_gc_keeps_named_and_frees_the_rest "rc=$rc $(cat "$E2E_TMP/gc.txt")"; fi
