/*
 * vmcore: one virtual machine.
 *
 * A VM is a QEMU child process driven over QMP, with the vmci agent
 * inside it reachable over a virtio-serial port. vmcore never decides
 * where files live: the caller gives the kernel, initramfs, disk and a
 * run directory for the VM's sockets and console log.
 *
 * Errors: functions return 0 on success and a negative errno-style code
 * with a message in err. For operations inside the guest (exec, put,
 * get), a negative return always means an infrastructure failure (QEMU
 * died, the agent broke the protocol or stopped answering); how a
 * command itself ended is reported in its result, never as an error.
 * -ENOTRECOVERABLE (VM_EACCEL) means the accelerator failed: QEMU stopped
 * the guest with an internal error (a KVM that cannot run this guest).
 */
#ifndef VMCI_VMCORE_H
#define VMCI_VMCORE_H

#include <stdbool.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/common.h"

enum vm_arch { VM_ARCH_X86_64, VM_ARCH_AARCH64 };

/* The error code of a VM whose accelerator failed (see above). */
#define VM_EACCEL ENOTRECOVERABLE
enum vm_accel { VM_ACCEL_AUTO, VM_ACCEL_KVM, VM_ACCEL_TCG };

/* "x86_64" / "aarch64"; vm_arch_parse returns -1 for anything else. */
const char *vm_arch_name(enum vm_arch arch);
int vm_arch_parse(const char *name, enum vm_arch *out);
/* The QEMU binary for an architecture: "qemu-system-x86_64", ... */
const char *vm_qemu_binary(enum vm_arch arch);
/*
 * The Debian package that installs it, as packages.txt says:
 * "qemu-system-x86", ...; NULL when the table names none. The string
 * lives as long as the process.
 */
const char *vm_qemu_package(enum vm_arch arch);

/* ---- acceleration (vmcore/kvm.c) ------------------------------------ */

/*
 * Which accelerator a VM gets. /dev/kvm answering its ioctls proves only
 * that KVM may be tried: a nested KVM can pass every probe and then abort
 * QEMU or stop the guest with an internal error once its kernel runs. The
 * proof is a guest that boots, so AUTO decides by a verdict (below) that a
 * boot canary wrote, and a KVM guest that fails at run time rewrites it.
 */
struct vm_kvm_info {
	bool usable;	  /* /dev/kvm opens, speaks API version 12, and a VM can be
			     created: KVM may be tried (the canary says whether it works) */
	int api_version;  /* KVM_GET_API_VERSION, or -1 */
	int max_vcpus;	  /* KVM_CAP_MAX_VCPUS (else NR_VCPUS, else 4); 0 without a VM */
	bool dirty_log;	  /* KVM_CAP_DIRTY_LOG_RING or manual dirty-log protect */
	char reason[256]; /* why not usable, or "" */
};

/*
 * Probes /dev/kvm ($VMCI_KVM_DEVICE when set: tests point it elsewhere)
 * with KVM ioctls. Never fails: the result says why not.
 */
void vm_kvm_probe(struct vm_kvm_info *out);

/* "kvm", "tcg" or "auto" (also NULL, meaning auto); returns -1 for anything else. */
int vm_accel_parse(const char *name, enum vm_accel *out);

/*
 * Chooses the accelerator for arch without booting anything: $VMCI_ACCEL
 * (kvm|tcg|auto) or the requested one. AUTO means TCG when the guest arch
 * is not the host's, /dev/kvm is not usable, or the verdict says KVM
 * failed or was slower; KVM when the verdict says it booted faster. With
 * no verdict for this host yet it returns VM_ACCEL_AUTO: undecided, a
 * canary must boot first (vm_accel_resolve does). why (may be NULL) says
 * why in a sentence.
 */
enum vm_accel vm_accel_choose(enum vm_accel requested, enum vm_arch arch, char *why, size_t whylen);

/*
 * Like vm_accel_choose, but always decides: when AUTO is undecided, boots
 * the canary from kernel and initrd (vm_accel_canary), writes the verdict
 * and decides by it. Concurrent callers (threads or processes) wait for
 * one canary. When neither accelerator boots the canary, nothing is
 * written and TCG is chosen: the VM's own boot then says what is wrong.
 */
enum vm_accel vm_accel_resolve(enum vm_accel requested, enum vm_arch arch, const char *kernel,
			       const char *initrd, char *why, size_t whylen);

/* ---- the accelerator verdict (vmcore/accel.c) ------------------------ */

/*
 * The verdict lives in $VMCI_HOME/accel.json, the one file vmcore keeps
 * of its own. It holds for one key: the host kernel release, the QEMU
 * binary (path, size and modification time: a new QEMU is a new key),
 * the CPU model and the version of the canary itself. A verdict with
 * another key is stale: ignored, and the canary runs again.
 */
#define VM_ACCEL_KEY_MAX 512

struct vm_accel_verdict {
	char key[VM_ACCEL_KEY_MAX];
	bool kvm_booted;    /* a guest booted under KVM */
	int64_t kvm_ms;	    /* its boot time; -1 when it did not boot */
	int64_t tcg_ms;	    /* the canary's boot time under TCG; -1 when unknown */
	char failure[256];  /* why KVM failed: the first telling console line, or "" */
	char source[16];    /* "canary", or "runtime" (a KVM guest failed while in use) */
	int64_t written_at; /* unix seconds */
};

/* The key of this host now. */
void vm_accel_key(enum vm_arch arch, char *out, size_t size);

/* $VMCI_HOME/accel.json */
int vm_accel_verdict_path(char *out, size_t size);

/*
 * Reads the verdict. Returns 1 with *out filled when one exists for the
 * current key, 0 when there is none or it is stale or unreadable (*out is
 * then zeroed, with out->key holding a stale file's key, if any).
 */
int vm_accel_verdict_read(enum vm_arch arch, struct vm_accel_verdict *out);

/* Writes v atomically (its key as given). */
int vm_accel_verdict_write(const struct vm_accel_verdict *v, struct vmci_err *err);

/* Whether v says KVM: it booted, and no slower than TCG where both were timed. */
bool vm_accel_verdict_prefers_kvm(const struct vm_accel_verdict *v);

/*
 * Boots kernel with initrd (the agent's initramfs as /init; no disk, no
 * extra kernel arguments) until the agent answers, first under KVM
 * (giving up after kvm_timeout_ms, or at once when QEMU dies or stops the
 * guest), then under TCG, in temporary run directories under $TMPDIR.
 * Fills *out for the current key; does not write it. Returns 0 when the
 * canary booted under at least one accelerator, else a negative code.
 */
int vm_accel_canary(enum vm_arch arch, const char *kernel, const char *initrd, int kvm_timeout_ms,
		    struct vm_accel_verdict *out, struct vmci_err *err);

/* ---- guest networking (vmcore/net.c) -------------------------------- */

/*
 * NONE: the VM has no network device at all. NAT: a virtio NIC whose
 * other end is a passt process of the VM's own (Debian package passt,
 * run unprivileged): the guest's TCP, UDP and ICMP leave through the
 * host's ordinary sockets, so it reaches what the host reaches, except
 * the host's loopback: passt runs with --no-map-gw, so the gateway
 * address is not the host, and a guest has no way to name 127.0.0.1 of
 * the host. DNS queries to VM_NET_DNS are forwarded to the host's
 * resolver. Nothing listens for the guest on the host, so guests cannot
 * reach each other. Every VM sees the same addresses (below), applied by
 * the agent after boot and after every restore (AGENT_NET_CONFIG).
 */
enum vm_network { VM_NET_NONE, VM_NET_NAT };

#define VM_NET_ADDRESS "10.0.2.15"
#define VM_NET_PREFIX  24
#define VM_NET_GATEWAY "10.0.2.2"
#define VM_NET_DNS     "10.0.2.3"
#define VM_NET_PACKAGE "passt" /* what NAT needs, as packages.txt names it */

/* "none" / "nat"; vm_network_parse returns -1 for anything else. */
const char *vm_network_name(enum vm_network net);
int vm_network_parse(const char *name, enum vm_network *out);

/* ---- one VM (vmcore/vm.c) ------------------------------------------ */

/*
 * The guest RAM QEMU is given for memory_mb under accel, in KiB. A TCG
 * guest gets 8 KiB more than its MiBs: QEMU 7.2 loses guest writes in a
 * live migration under TCG when a RAM block's length is a multiple of
 * 256 KiB (its dirty-bitmap sync then clears the bits without making the
 * vCPUs track writes again, so the destination runs on stale memory;
 * fixed in QEMU 9.0). Any other length takes the sync that does. Every
 * TCG VM gets the padding, file-backed or not, so a template, a VM
 * restored from it and a migration's destination all agree on the size;
 * a saved state or template is tied to it (runner templates name it).
 */
long vm_memory_kb(enum vm_accel accel, int memory_mb);

/* SCSI targets for disks added at run time (see vm_disk_attach). */
#define VM_DISK_TARGETS 8

struct vm_spec {
	enum vm_arch arch;
	enum vm_accel accel; /* AUTO: vm_accel_resolve(), and a KVM that fails is retried
				under TCG (not for spec->incoming or loadvm: the state is KVM's) */
	int cpus;	     /* default 1 */
	int memory_mb;	     /* default 256 */
	const char *kernel;  /* direct-boot kernel image (required) */
	const char *initrd;  /* initramfs holding the agent as /init (required) */
	const char *cmdline; /* appended to vmci's own kernel arguments, may be NULL */
	const char *disk;    /* qcow2 disk (the VM's own overlay), may be NULL */
	/*
	 * The disk is deleted with the VM (a job's or a pool's overlay): QEMU
	 * never asks the host to put it on stable storage (cache=unsafe), so a
	 * guest's sync, a snapshot save and a revert wait for no fsync. A host
	 * crash loses the disk, which loses nothing. Leave it false for a disk
	 * that outlives the VM (an image or template being built).
	 */
	bool disk_disposable;
	const char *run_dir;  /* an existing directory for sockets and console.log */
	int ready_timeout_ms; /* from start to a ready agent; default 120000 */
	/*
	 * The VM's network (see above). It is part of the VM's shape: a saved
	 * state (incoming) must be started with the network it was saved with.
	 */
	enum vm_network network;

	/*
	 * Guest RAM in a file (memory-backend-file) instead of anonymous
	 * memory. mem_shared: guest writes go to the file, so that a state
	 * saved with vm_state_save pairs with it. Otherwise the file is mapped
	 * privately (copy-on-write, never written): a VM restored from a
	 * template reads only the pages its guest touches.
	 */
	const char *mem_path;
	bool mem_shared;
	/*
	 * Guest RAM in the same named memory backend as with mem_path, but
	 * anonymous: the destination of a migration from a VM with mem_path
	 * (QEMU moves RAM by its backend's name and size; the pages travel in
	 * the stream, the file stays behind). Ignored with mem_path.
	 */
	bool mem_backend;
	/*
	 * Start from this state file (vm_state_save) instead of booting. The
	 * disk (with the contents it had when the state was saved, e.g. a clone
	 * of that disk), memory size, vCPUs, accelerator and memory file must
	 * be those of the saved VM. See vm_start.
	 */
	const char *incoming;
	/*
	 * Start from this internal snapshot of spec->disk (vm_snapshot_save;
	 * the disk may be a copy of the disk of the VM that saved it) instead
	 * of booting: QEMU loads it as it starts, and the guest then gets the
	 * host's time, fresh entropy and its network, as with incoming, but
	 * no instance id (a revert to that snapshot would take it away again).
	 * Memory size, vCPUs, accelerator and network mode must be those of
	 * the VM that saved it.
	 */
	const char *loadvm;
	/*
	 * For the destination of a migration only (vm_migrate_listen; vm_start
	 * ignores it): by SCSI target, a new qcow2 overlay for each disk the
	 * source added at run time (vm_disk_attach), over the same backing
	 * file; NULL where the source has none.
	 */
	const char *migrate_disks[VM_DISK_TARGETS];
};

struct vm;

/*
 * Starts QEMU, connects QMP, waits for the agent's hello. With
 * spec->incoming, QEMU loads that saved state instead of booting, and the
 * guest gets the host's time, fresh entropy and a new instance id
 * (vm_instance_id) before vm_start returns. On success the
 * VM is ready for exec. The QEMU process dies with the calling process,
 * also when that is killed with SIGKILL (PR_SET_PDEATHSIG): the thread
 * that calls vm_start must outlive the VM. A NAT VM's network helper
 * quits with QEMU (see vmcore/net.c). A NAT VM is ready with its network
 * configured. On failure nothing is left
 * running, and err includes the last lines of the guest console.
 */
int vm_start(const struct vm_spec *spec, struct vm **out, struct vmci_err *err);

/*
 * Stops the VM: QMP quit, up to timeout_ms for QEMU to exit, then
 * SIGKILL; waits for the process and frees vm. Safe on NULL.
 */
void vm_stop(struct vm *vm, int timeout_ms);

/* The QEMU process id (for tests and diagnostics). */
pid_t vm_pid(const struct vm *vm);

/* Ready-time facts the agent reported: "arch", "kernel", "os", "hostname"; NULL if absent. */
const char *vm_guest_info(const struct vm *vm, const char *key);

/* Milliseconds from vm_start to a ready agent. */
int64_t vm_boot_ms(const struct vm *vm);

/*
 * The per-clone id of a VM started from saved state (spec->incoming),
 * also in the guest's /run/vmci/instance-id: 32 hex digits, random, so
 * that clones of one template tell themselves apart (the kernel's
 * boot_id is the template's once anything read it before the save).
 * "" for a VM that booted or started from a snapshot (spec->loadvm).
 */
const char *vm_instance_id(const struct vm *vm);

/* The accelerator QEMU runs with. */
enum vm_accel vm_accel_used(const struct vm *vm);

/*
 * Whether the guest RAM is a named memory backend (spec mem_path or
 * mem_backend): a migration's destination must then have one too.
 */
bool vm_mem_backend(const struct vm *vm);

/* ---- commands in the guest ------------------------------------------ */

enum vm_exit_kind {
	VM_EXITED,	 /* code: exit status */
	VM_SIGNALED,	 /* code: signal number */
	VM_TIMED_OUT,	 /* killed after timeout_ms */
	VM_CANCELLED,	 /* killed after vm_cancel() */
	VM_START_FAILED, /* code: errno (ENOENT: command not found) */
};

struct vm_exec_result {
	enum vm_exit_kind kind;
	int code;
	int64_t duration_ms; /* measured in the guest */
};

/* Called with each chunk of output as it arrives; fd is 1 (stdout) or 2 (stderr). */
typedef void (*vm_output_fn)(void *ctx, int fd, const void *data, size_t len);

struct vm_exec_opts {
	const char *const *argv; /* required; argv[0] is looked up in the guest's PATH */
	const char *const *env;	 /* "KEY=VALUE" added to the guest's base environment */
	const char *cwd;	 /* NULL: / */
	uint32_t timeout_ms;	 /* 0: none */
	int stdin_fd;		 /* host fd read to EOF into the command's stdin; -1: /dev/null */
	vm_output_fn on_output;	 /* NULL: output is discarded */
	void *ctx;
	/*
	 * Both > 0: the command runs on a pseudo-terminal of this size in the
	 * guest (its controlling terminal: job control, line editing), and all
	 * its output comes as stdout (fd 1). Resize it with vm_resize.
	 */
	uint16_t pty_rows, pty_cols;
};

/*
 * Runs a command in the guest and waits for it to end. Returns 0 with
 * *res filled however the command ended, or a negative code when the VM
 * failed (QEMU exited, the agent stopped answering or broke the protocol).
 * One operation runs on a VM at a time.
 */
int vm_exec(struct vm *vm, const struct vm_exec_opts *opts, struct vm_exec_result *res,
	    struct vmci_err *err);

/*
 * Asks the running vm_exec to kill its command (reported VM_CANCELLED).
 * Async-signal-safe and callable from any thread; a no-op when idle.
 */
void vm_cancel(struct vm *vm);

/*
 * Gives the running vm_exec's pseudo-terminal a new size (the guest's
 * foreground process gets SIGWINCH). Async-signal-safe and callable from
 * any thread, for a SIGWINCH handler; a no-op without a pty command.
 */
void vm_resize(struct vm *vm, uint16_t rows, uint16_t cols);

/* What vm_exec returns after vm_detach: its command runs on in the guest. */
#define VM_EDETACHED EINPROGRESS

/*
 * Asks the running vm_exec to let go of its command: vm_exec returns
 * -VM_EDETACHED while the command runs on in the guest, whose agent keeps
 * its output until a host acknowledges it. The VM can then move
 * (vm_migrate_to), and whoever owns it next takes the command over with
 * vm_exec_resume (its stream is in vm_agent_state_get). Async-signal-safe
 * and callable from any thread; a no-op when idle.
 */
void vm_detach(struct vm *vm);

/*
 * Takes over the command an earlier owner of this guest detached (stream:
 * from vm_agent_state): delivers the output that owner had not processed,
 * then the rest, and waits for the command to end, as vm_exec does. From
 * opts: on_output and ctx, timeout_ms (what is left of the command's; 0:
 * none) and argv[0] (for messages; may be NULL). Its stdin is not carried
 * over (it reads EOF). A vm_cancel made since the command was let go of
 * (one that gave a move up) is kept: the command is killed.
 */
int vm_exec_resume(struct vm *vm, uint32_t stream, const struct vm_exec_opts *opts,
		   struct vm_exec_result *res, struct vmci_err *err);

/* A shell-friendly "exited 3" / "killed by SIGKILL" / "timed out" for a result. */
void vm_exec_result_describe(const struct vm_exec_result *res, char *out, size_t size);

/* ---- files ---------------------------------------------------------- */

/*
 * Copies the contents of host_dir into guest_dir (created if missing) as a
 * tar stream: regular files, directories, symlinks, modes and mtimes.
 */
int vm_put_dir(struct vm *vm, const char *host_dir, const char *guest_dir, struct vmci_err *err);

/* Streams a tar archive read from fd until EOF into guest_dir. */
int vm_put_tar(struct vm *vm, int fd, const char *guest_dir, struct vmci_err *err);

/*
 * Copies guest_path (a file, a directory, or a glob such as
 * "build/ *.tar.gz") out of the guest into host_dir, refusing entries that
 * would land outside host_dir. A glob matching nothing is not an error.
 */
int vm_get(struct vm *vm, const char *guest_path, const char *host_dir, struct vmci_err *err);

/*
 * Writes the tar stream of guest_path to fd. When fd stops taking it (its
 * reader shut it down: a limit was reached), the guest is told to stop
 * archiving and the call fails with the guest's "cancelled".
 */
int vm_get_tar(struct vm *vm, const char *guest_path, int fd, struct vmci_err *err);

/* ---- disks added at run time (vmcore/disk.c) -------------------------- */

/*
 * Every VM has a virtio-scsi controller from boot, so that disks can be
 * added while it runs, with no PCI hot-plug, on every machine type. The
 * guest sees a disk at SCSI target `target`, LUN 0 (in Linux,
 * /sys/bus/scsi/devices/H:0:TARGET:0/block/NAME) once its kernel has
 * scanned the hot-plug event; its kernel needs virtio_scsi and sd_mod.
 * VM_DISK_TARGETS (targets 0 to 7) is defined with struct vm_spec.
 */

/*
 * Adds the file path, of format "qcow2" or "raw" (never probed: a raw
 * disk a guest wrote could pass for anything), as a SCSI disk at target,
 * read-only when asked. Only between operations (never while vm_exec
 * runs). Fails when the target holds a disk already or QEMU cannot open
 * the file.
 */
int vm_disk_attach(struct vm *vm, unsigned target, const char *path, const char *format,
		   bool read_only, struct vmci_err *err);

/*
 * Removes the disk at target, whatever the guest does with it (its I/O
 * to it fails from then on), and closes the file. Afterwards the VM has
 * the devices it booted with again, as a snapshot-load or a saved state
 * needs. A target with no disk is not an error.
 */
int vm_disk_detach(struct vm *vm, unsigned target, struct vmci_err *err);

/* ---- guest housekeeping --------------------------------------------- */

/* Round trip through the agent; fails after timeout_ms. */
int vm_ping(struct vm *vm, int timeout_ms, struct vmci_err *err);

/*
 * Sets the guest's clock to the host's, adds fresh entropy and, for a
 * NAT VM, has the agent configure its network afresh (after a restore).
 */
int vm_refresh_guest(struct vm *vm, struct vmci_err *err);

/* ---- snapshots (vmcore/snapshot.c) ---------------------------------- */

/*
 * Internal snapshots live in the VM's own qcow2 disk (spec->disk is
 * required) and hold RAM, device state and disk contents. Call these
 * between operations, never while vm_exec or a transfer runs.
 */

/*
 * Saves snapshot name (QMP snapshot-save). The guest pauses while its
 * memory is written, then goes on. Fails when a snapshot of that name
 * exists (delete it first) or the disk cannot hold it.
 */
int vm_snapshot_save(struct vm *vm, const char *name, struct vmci_err *err);

/*
 * Reverts to snapshot name (QMP snapshot-load): memory, devices and disk
 * as they were when it was saved; every process, file and write since is
 * gone. Then reconnects the agent (a new hello, answered at once), sets
 * the guest clock to the host's and adds fresh entropy: the VM is ready
 * for vm_exec on return. The guest's network is left as the snapshot has
 * it (the VM keeps its network helper), not configured again. On failure (missing or corrupt
 * snapshot, QEMU gone) the VM's state is undefined: stop it.
 */
int vm_snapshot_load(struct vm *vm, const char *name, struct vmci_err *err);

/* Deletes snapshot name (QMP snapshot-delete); a missing one is an error. */
int vm_snapshot_delete(struct vm *vm, const char *name, struct vmci_err *err);

/* ---- saved state and templates (vmcore/template.c) ------------------- */

/*
 * Pauses the VM and writes its device state and memory to path (a QMP
 * migration into a file). When the VM's RAM is a shared file (spec
 * mem_path + mem_shared), the memory stays in that file and path holds
 * only the device state: the two files together are the saved state.
 * The VM stays paused: stop it afterwards. To start from it, see
 * spec->incoming; the new VM needs a disk with the contents this VM's
 * disk has now (a copy-on-write clone of it, once this VM stopped).
 */
int vm_state_save(struct vm *vm, const char *path, struct vmci_err *err);

/* ---- live migration (vmcore/migrate.c) ------------------------------- */

/*
 * A running VM moves, disk and all, to a new QEMU process (on this
 * machine; the transport is unix sockets) while its guest runs on:
 *
 *   destination: vm_migrate_listen   QEMU with -incoming defer, its disk a
 *                                    fresh overlay exported over NBD
 *   source:      vm_migrate_to       the disk by blockdev-mirror to that
 *                                    export, then the RAM and devices by
 *                                    migrate; the source ends paused
 *   destination: vm_migrate_accept   the guest runs there: the agent is
 *                                    reconnected, the clock and entropy
 *                                    refreshed
 *   source:      vm_stop             (or vm_migrate_abort when the
 *                                    destination failed to accept)
 *
 * The two sides may live in two processes: what crosses between them is
 * a struct vm_migrate_addr (destination to source) and a struct
 * vm_agent_state (source to destination), both plain data.
 */

/* Longest socket path a migration address holds (sun_path's size). */
#define VM_SOCKET_PATH_MAX 108

struct vm_migrate_addr {
	char nbd[VM_SOCKET_PATH_MAX];	 /* unix socket of the destination's NBD server */
	char stream[VM_SOCKET_PATH_MAX]; /* unix socket the migration stream goes to */
};

/*
 * Where the host end of the agent channel stood: what a new owner of the
 * VM needs to resume the channel without losing or repeating a frame.
 */
struct vm_agent_state {
	uint64_t guest_seq; /* the last guest frame the old owner processed */
	uint32_t stream;    /* the command vm_detach let go of, or 0 (see vm_exec_resume) */
};

/* The agent channel's position now (vm between operations, or detached). */
void vm_agent_state_get(const struct vm *vm, struct vm_agent_state *out);

/*
 * Starts the destination of a live migration: QEMU for spec, which must
 * have the source's shape (arch, vCPUs, memory and its backend, network,
 * kernel, initramfs, command line; accel: vm_accel_used of the source) and a disk
 * that is a new overlay over the source disk's backing file (same virtual
 * size); spec->incoming must be NULL. For each disk the source added at
 * run time, spec->migrate_disks names a new overlay over its backing
 * file, which the destination gets at the same SCSI target before the
 * device state arrives. The disks are exported writable over NBD and
 * QEMU waits for the migration stream, at the sockets in *addr
 * (in spec->run_dir). The VM is not usable until vm_migrate_accept; to
 * give up, vm_stop it. On failure nothing is left running.
 */
int vm_migrate_listen(const struct vm_spec *spec, struct vm **out, struct vm_migrate_addr *addr,
		      struct vmci_err *err);

struct vm_migrate_opts {
	int downtime_limit_ms; /* the pause QEMU aims for at switchover; 0: 50 */
	int64_t max_bandwidth; /* bytes per second for the RAM; 0: no limit (a local link) */
	int timeout_ms;	       /* for the whole move; 0: 300000 */
};

/* What vm_migrate_to measured. */
struct vm_migrate_stats {
	int64_t mirror_ms;     /* from the start to the disk in sync */
	int64_t total_ms;      /* from the start to the destination holding the state */
	int64_t downtime_ms;   /* QEMU's count of the guest's pause at switchover */
	uint64_t ram_bytes;    /* RAM transferred */
	uint64_t disk_bytes;   /* disk bytes the mirrors copied */
	int64_t stopped_at_ms; /* wall clock (ms) of the guest's stop for the switchover, or 0 */
};

/*
 * Moves src to the destination at *to: mirrors its disk and every disk
 * added at run time (vm_disk_attach; the destination must have them, see
 * vm_migrate_listen) (sync top, writes mirrored synchronously once in
 * sync), migrates RAM and devices with opts (NULL: defaults), and
 * completes the mirrors while the guest is paused before the switchover,
 * so the destination's disks are exact. Call
 * it between operations (no vm_exec running). On success the guest's
 * state is at the destination and src is paused: vm_stop it once the
 * destination accepted, or vm_migrate_abort it when it did not. On
 * failure (destination gone or refusing, mirror or migration error,
 * timeout, or vm_cancel from another thread: ECANCELED) src runs on as
 * before, nothing of the attempt is left in its QEMU, and err says why;
 * the destination is the caller's to stop. A source whose RAM is a
 * memory backend (vm_mem_backend) needs a destination with one too.
 * stats may be NULL.
 */
int vm_migrate_to(struct vm *src, const struct vm_migrate_addr *to,
		  const struct vm_migrate_opts *opts, struct vm_migrate_stats *stats,
		  struct vmci_err *err);

/*
 * Waits up to timeout_ms (0: 300000) for the migration into dst to
 * complete and the guest to run, ends the NBD export, reconnects the
 * agent where the source's owner left it (from), sets the guest clock to
 * the host's, adds fresh entropy and configures a NAT guest's network
 * afresh (its network helper is the destination's own). On success dst is a VM like any
 * other (it has no snapshots of its own: the source's stayed behind). On
 * failure stop dst; the source can be resumed with vm_migrate_abort.
 */
int vm_migrate_accept(struct vm *dst, const struct vm_agent_state *from, int timeout_ms,
		      struct vmci_err *err);

/*
 * Wall clock (ms, as QEMU stamped its resume event) at which the guest
 * migrated into dst ran again, or 0 before vm_migrate_accept succeeded.
 * Less the source's vm_migrate_stats.stopped_at_ms, it is the pause the
 * guest lived through.
 */
int64_t vm_migrate_resumed_at_ms(const struct vm *dst);

/*
 * After vm_migrate_to succeeded but the destination did not accept:
 * resumes src where it paused (its disk is as the guest left it),
 * reconnects its agent and refreshes the guest clock.
 */
int vm_migrate_abort(struct vm *src, struct vmci_err *err);

#endif
