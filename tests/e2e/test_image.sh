#!/usr/bin/env bash
# `vmci image` as a user runs it, in a store of its own (sharing only the
# download cache): import a root filesystem, list and inspect it, pull a
# disk from a local HTTP server (a good and a wrong checksum), remove, gc.
# Then what an untrusted or unlucky import, pull or gc meets: device nodes
# in a tarball, a full disk, a server that never stops sending, and the
# leftovers of killed imports and pulls.
set -u
. "$(dirname "$0")/lib.sh"

# Everything started or mounted here is undone on exit, whatever happens.
cleanup_pids=() cleanup_mounts=()
cleanup() {
	local p m
	for p in "${cleanup_pids[@]}"; do kill "$p" 2>/dev/null; done
	for m in "${cleanup_mounts[@]}"; do umount -l "$m" 2>/dev/null; done
	rm -rf "$E2E_TMP"
}
trap cleanup EXIT

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

# The OS comes from the image's own /etc/os-release, the kernel from the image's kernel.
os=$(python3 -c 'import json,sys
r=[r for r in json.load(open(sys.argv[1])) if r.get("name")=="e2e-root"][0]
print(r["os"]["pretty_name"], bool(r["kernel"]))' "$E2E_TMP/ls.json" 2>/dev/null)
expect_eq image_ls_json_shows_the_os_release_and_kernel_read_from_the_image "e2e rootfs True" "$os"

"$VMCI" image ls >"$E2E_TMP/ls.txt" 2>&1
if grep -q '^NAME *ARCH *OS *KERNEL' "$E2E_TMP/ls.txt" && grep -q 'e2e-root .*e2e rootfs' "$E2E_TMP/ls.txt"; then pass image_ls_prints_a_table
else fail image_ls_prints_a_table "$(cat "$E2E_TMP/ls.txt")"; fi

"$VMCI" image inspect e2e-root >"$E2E_TMP/inspect.json" 2>"$E2E_TMP/err"
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["name"]=="e2e-root" and d["digest"].startswith("sha256:")' "$E2E_TMP/inspect.json" 2>/dev/null
then pass image_inspect_prints_json
else fail image_inspect_prints_json "$(head -c 400 "$E2E_TMP/inspect.json") $(cat "$E2E_TMP/err")"; fi

# The whole document, byte for byte: what the store holds, in the order and
# layout `vmci image inspect` has always printed (JSON indented by 2, keys in
# this order, the manifest exactly as stored, files in directory order).
python3 - "$E2E_TMP/inspect.json" "$VMCI_HOME/images" >"$E2E_TMP/inspect.diff" 2>&1 <<'PY'
import difflib, json, os, struct, sys
printed, store = open(sys.argv[1]).read(), sys.argv[2]
digest = open(store + "/names/e2e-root").read().split()[0].removeprefix("sha256:")
path = store + "/blobs/sha256-" + digest
def usage(p):
    st = os.lstat(p)
    return st.st_blocks * 512 + (sum(usage(p + "/" + c) for c in os.listdir(p)) if os.path.isdir(p) else 0)
files = []
for name in os.listdir(path):
    if name.startswith("."):
        continue
    st = os.lstat(path + "/" + name)
    f = {"name": name, "path": path + "/" + name, "size": st.st_size, "disk_usage": st.st_blocks * 512}
    if name not in ("vmlinuz", "initramfs.cpio.gz", "manifest.json"):
        head = open(path + "/" + name, "rb").read(32)
        qcow2 = head[:4] == b"QFI\xfb"
        f["format"] = "qcow2" if qcow2 else "raw"
        f["virtual_size"] = struct.unpack(">Q", head[24:32])[0] if qcow2 else st.st_size
    files.append(f)
want = {"name": "e2e-root", "digest": "sha256:" + digest, "path": path, "size": usage(path),
        "names": ["e2e-root"], "manifest": json.load(open(path + "/manifest.json")),
        "files": files, "parents": [], "clones": []}
expected = json.dumps(want, indent=2, ensure_ascii=False) + "\n"
sys.stdout.writelines(difflib.unified_diff(expected.splitlines(True), printed.splitlines(True), "expected", "printed"))
sys.exit(printed != expected)
PY
if [ $? = 0 ]; then pass image_inspect_prints_the_store_as_it_is_byte_for_byte
else fail image_inspect_prints_the_store_as_it_is_byte_for_byte "$(head -c 600 "$E2E_TMP/inspect.diff")"; fi

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
cleanup_pids+=($!)
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

# ---- an untrusted tarball: device nodes -------------------------------------------

python3 - "$E2E_TMP" <<'PY'
import io, sys, tarfile
tmp = sys.argv[1]
def add(t, name, kind, data=b"", mode=0o644, dev=(0, 0)):
    i = tarfile.TarInfo(name)
    i.type, i.mode, i.mtime = kind, mode, 1700000000
    i.devmajor, i.devminor = dev
    i.size = len(data)
    t.addfile(i, io.BytesIO(data) if data else None)
with tarfile.open(tmp + "/devices.tar.gz", "w:gz") as t:
    add(t, "./etc", tarfile.DIRTYPE, mode=0o755)
    add(t, "./etc/os-release", tarfile.REGTYPE, b'PRETTY_NAME="devices"\n')
    add(t, "./dev", tarfile.DIRTYPE, mode=0o755)
    add(t, "./dev/evil", tarfile.CHRTYPE, mode=0o666, dev=(1, 3))
    add(t, "./dev/disk", tarfile.BLKTYPE, mode=0o660, dev=(8, 0))
PY

# strace shows whether extraction asks the kernel for a device node at all.
# (LeakSanitizer cannot run under ptrace: a sanitized build skips it here.)
trace=""
command -v strace >/dev/null && trace="strace -f -qq -e trace=mknod,mknodat -o $E2E_TMP/mknod.trace"
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
	$trace "$VMCI" image import e2e-devices "$E2E_TMP/devices.tar.gz" >/dev/null 2>"$E2E_TMP/err"
rc=$?
expect_eq image_import_of_device_nodes_succeeds 0 "$rc"
[ "$rc" = 0 ] || cat "$E2E_TMP/err"
if [ -z "$trace" ]; then
	echo "ok image_import_never_calls_mknod_for_a_device # SKIP strace is not installed (make deps)"
elif grep -E 'S_IF(CHR|BLK)' "$E2E_TMP/mknod.trace" >"$E2E_TMP/mknods"; then
	fail image_import_never_calls_mknod_for_a_device "$(head -3 "$E2E_TMP/mknods")"
else
	pass image_import_never_calls_mknod_for_a_device
fi
left=$(find "$VMCI_HOME" \( -type c -o -type b \) -print 2>/dev/null | head -3)
expect_eq image_import_leaves_no_device_node_on_the_host "" "$left"

disk=$("$VMCI" image inspect e2e-devices 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])' 2>/dev/null)/disk.qcow2
qemu-img convert -O raw "$disk" "$E2E_TMP/devices.raw" 2>"$E2E_TMP/err"
evil=$(debugfs -R 'stat /dev/evil' "$E2E_TMP/devices.raw" 2>/dev/null)
blk=$(debugfs -R 'stat /dev/disk' "$E2E_TMP/devices.raw" 2>/dev/null)
if grep -q 'Type: character special' <<<"$evil" && grep -q 'number: 01:03' <<<"$evil" &&
	grep -q 'Type: block special' <<<"$blk" && grep -q 'number: 08:00' <<<"$blk"
then pass image_import_makes_device_nodes_inside_the_image
else fail image_import_makes_device_nodes_inside_the_image "disk=$disk $(cat "$E2E_TMP/err") $(head -3 <<<"$evil")"; fi
rm -f "$E2E_TMP/devices.raw"

# ---- a full disk ------------------------------------------------------------------

# The root filesystem is assembled in $VMCI_HOME/cache/rootfs: an 8 MiB tmpfs there.
full_home=$E2E_TMP/full-home
mkdir -p "$full_home/cache/rootfs"
[ -d "$real_home/cache/debs" ] && ln -s "$real_home/cache/debs" "$full_home/cache/debs"
python3 - "$E2E_TMP/rootfs-big" <<'PY'
import os, sys
os.makedirs(sys.argv[1] + "/etc", exist_ok=True)
with open(sys.argv[1] + "/etc/big", "wb") as f:
    f.write(bytes(range(251)) * (64 * 1024))  # 16 MB: twice what fits
PY
tar -C "$E2E_TMP/rootfs-big" -czf "$E2E_TMP/big.tar.gz" .
if mount -t tmpfs -o size=8m tmpfs "$full_home/cache/rootfs" 2>"$E2E_TMP/err"; then
	cleanup_mounts+=("$full_home/cache/rootfs")
	VMCI_HOME=$full_home "$VMCI" image import e2e-full "$E2E_TMP/big.tar.gz" >/dev/null 2>"$E2E_TMP/err"
	rc=$?
	if [ "$rc" != 0 ] && grep -q "etc/big" "$E2E_TMP/err" && grep -qi "no space left on device" "$E2E_TMP/err"
	then pass image_import_on_a_full_disk_fails_naming_the_file
	else fail image_import_on_a_full_disk_fails_naming_the_file "rc=$rc $(cat "$E2E_TMP/err")"; fi
	VMCI_HOME=$full_home "$VMCI" image ls >"$E2E_TMP/ls.txt" 2>&1
	scratch=$(ls -A "$full_home/cache/rootfs" "$full_home/images/tmp" 2>/dev/null | grep -v ':$' | grep .)
	if ! grep -q e2e-full "$E2E_TMP/ls.txt" && [ -z "$scratch" ]
	then pass image_import_on_a_full_disk_publishes_nothing_and_leaves_no_scratch
	else fail image_import_on_a_full_disk_publishes_nothing_and_leaves_no_scratch "$(cat "$E2E_TMP/ls.txt") scratch: $scratch"; fi
	umount -l "$full_home/cache/rootfs"
else
	echo "ok image_import_on_a_full_disk_fails_naming_the_file # SKIP cannot mount a tmpfs: $(cat "$E2E_TMP/err")"
fi
rm -rf "$E2E_TMP/rootfs-big" "$E2E_TMP/big.tar.gz"

# ---- a server that never stops sending ---------------------------------------------

endless_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$endless_port" >/dev/null 2>&1 <<'PY' &
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(4)
chunk = b"\x5a" * 65536
while True:
    c, _ = s.accept()
    try:
        c.recv(4096)
        c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        while True:
            c.sendall(chunk)
    except OSError:
        pass
    c.close()
PY
cleanup_pids+=($!)
for _ in $(seq 1 50); do
	python3 -c "import socket; socket.create_connection(('127.0.0.1',$endless_port),1)" 2>/dev/null && break
	sleep 0.1
done
# timeout: a pull without a limit would fill the disk.
timeout 60 "$VMCI" image pull "http://127.0.0.1:$endless_port/endless.qcow2" --sha256 "$sum" \
	--name e2e-endless --max-size 2M >/dev/null 2>"$E2E_TMP/err"
rc=$?
parts=$(ls "$VMCI_HOME/images/tmp" 2>/dev/null | grep '\.part$')
if [ "$rc" != 0 ] && grep -q "limit of 2.0 MiB" "$E2E_TMP/err" && [ -z "$parts" ]
then pass image_pull_stops_an_endless_download_at_max_size_and_keeps_nothing
else fail image_pull_stops_an_endless_download_at_max_size_and_keeps_nothing "rc=$rc parts='$parts' $(cat "$E2E_TMP/err")"; fi

"$VMCI" image pull "$url" --sha256 "$sum" --name e2e-bad-size --max-size lots >/dev/null 2>"$E2E_TMP/err"
rc=$?
if [ "$rc" = 2 ] && grep -qF "bad --max-size 'lots'" "$E2E_TMP/err"; then pass image_pull_bad_max_size_is_a_usage_error
else fail image_pull_bad_max_size_is_a_usage_error "rc=$rc $(cat "$E2E_TMP/err")"; fi

# ---- leftovers of killed work -------------------------------------------------------

# A store of its own: gc here must not touch what other runs share.
gc_home=$E2E_TMP/gc-home
mkdir -p "$gc_home/cache" "$gc_home/images/tmp"
[ -d "$real_home/cache/debs" ] && ln -s "$real_home/cache/debs" "$gc_home/cache/debs"
stale_part=$gc_home/images/tmp/pull-$(printf '%064d' 7).part
echo "half a download" >"$stale_part"
# A live import's scratch: its owner holds the lock for as long as it runs.
live=$gc_home/cache/rootfs/live-0123456789ab.1
mkdir -p "$live/target"
flock "$live" sleep 60 &
cleanup_pids+=($!)
# A killed import: kill -9 once it has made its root filesystem scratch.
mkdir -p "$E2E_TMP/rootfs-slow/etc"
head -c 64M /dev/zero >"$E2E_TMP/rootfs-slow/etc/zeros"
tar -C "$E2E_TMP/rootfs-slow" -czf "$E2E_TMP/slow.tar.gz" .
rm -rf "$E2E_TMP/rootfs-slow"
VMCI_HOME=$gc_home "$VMCI" image import e2e-killed "$E2E_TMP/slow.tar.gz" >/dev/null 2>&1 &
importer=$!
killed=""
for _ in $(seq 1 600); do
	killed=$(ls -d "$gc_home"/cache/rootfs/e2e-killed-* 2>/dev/null | head -1)
	[ -n "$killed" ] && break
	kill -0 "$importer" 2>/dev/null || break
	sleep 0.02
done
kill -9 "$importer" 2>/dev/null
wait "$importer" 2>/dev/null
# The owner is gone once nothing holds its lock (a helper program it ran may outlive it a moment).
for _ in $(seq 1 250); do
	[ -z "$killed" ] || flock -n "$killed" true 2>/dev/null && break
	sleep 0.02
done

VMCI_HOME=$gc_home "$VMCI" image gc --dry-run >"$E2E_TMP/gc.txt" 2>&1
if grep -qF "would remove partial download $stale_part" "$E2E_TMP/gc.txt" &&
	[ -n "$killed" ] && grep -qF "would remove scratch directory $killed" "$E2E_TMP/gc.txt" &&
	! grep -qF "$live" "$E2E_TMP/gc.txt" && [ -e "$stale_part" ] && [ -d "$killed" ]
then pass image_gc_dry_run_lists_stale_partial_downloads_and_killed_imports
else fail image_gc_dry_run_lists_stale_partial_downloads_and_killed_imports "killed='$killed' $(cat "$E2E_TMP/gc.txt")"; fi

VMCI_HOME=$gc_home "$VMCI" image gc >"$E2E_TMP/gc.txt" 2>&1
rc=$?
if [ "$rc" = 0 ] && [ ! -e "$stale_part" ] && [ -n "$killed" ] && [ ! -e "$killed" ] && [ -d "$live" ]
then pass image_gc_removes_stale_leftovers_and_keeps_live_scratch
else fail image_gc_removes_stale_leftovers_and_keeps_live_scratch "rc=$rc $(cat "$E2E_TMP/gc.txt")"; fi
rm -f "$E2E_TMP/slow.tar.gz"

# ---- a rebuild after an agent change takes the cached root disk ---------------------------
# The agent changes often (and with it every image's digest): a Debian image is
# then rebuilt from the finished root disk in the download cache, without
# debootstrap (make test's VM tests have built debian-13 before this runs).
agent_dir=$E2E_TMP/agent-changed
mkdir -p "$agent_dir"
cp "${VMCI_AGENT_DIR:-$(dirname "$VMCI")/agent}"/vmci-agent-* "$agent_dir"/
printf 'changed' >>"$agent_dir/vmci-agent-x86_64"
VMCI_AGENT_DIR=$agent_dir VMCI_LOG=info "$VMCI" image build debian-13 >"$E2E_TMP/out" 2>"$E2E_TMP/err"
rc=$?
if [ "$rc" = 0 ] && grep -q "using the cached root disk" "$E2E_TMP/err" && ! grep -q "debootstrap: " "$E2E_TMP/err"
then pass image_rebuild_after_an_agent_change_takes_the_cached_root_disk
else fail image_rebuild_after_an_agent_change_takes_the_cached_root_disk "rc=$rc $(tail -c 600 "$E2E_TMP/err")"; fi
out=$(VMCI_AGENT_DIR=$agent_dir "$VMCI" vm run debian-13 -- sh -c '. /etc/os-release; echo $VERSION_ID' 2>"$E2E_TMP/err")
expect_eq image_rebuilt_from_the_cached_root_disk_boots "13" "$out"
