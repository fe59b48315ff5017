/*
 * Private to vmcore: the host end of the agent channel, and the state of
 * a running VM shared by vm.c, exec.c and files.c.
 *
 * One operation runs at a time. channel_run() drives it: it writes queued
 * frames, feeds an optional input fd to the guest as frames, hands every
 * frame of the operation's stream to the operation, acknowledges what it
 * received, and watches QEMU so that a VM that dies mid-operation is
 * reported within moments instead of a hang.
 */
#ifndef VMCI_VMCORE_CHANNEL_H
#define VMCI_VMCORE_CHANNEL_H

#include <signal.h>

#include "agent/protocol.h"
#include "vmcore/qemu.h"
#include "vmcore/qmp.h"
#include "vmcore/vmcore.h"

/* The network helper of a NAT VM (vmcore/net.c). */
struct net_helper {
	pid_t pid; /* 0: none */
};

struct vm {
	enum vm_arch arch;
	enum vm_accel accel;
	enum vm_network network;
	struct net_helper net;
	char run_dir[PATH_MAX];
	struct qemu_paths paths;
	struct qemu_proc proc;
	struct qmp *qmp;
	int64_t boot_ms;
	char **info;	      /* "key=value" from the agent's hello */
	bool ram_in_file;     /* guest RAM is a shared file (spec mem_path + mem_shared) */
	bool has_disk;	      /* spec->disk was given: QEMU_DISK_NODE exists */
	unsigned hot_disks;   /* bit t: a disk at SCSI target t (vm_disk_attach) */
	bool mem_file;	      /* guest RAM is a memory backend: spec mem_path or mem_backend */
	char instance_id[33]; /* per-clone id of a VM restored from saved state, or "" */
	uint32_t qmp_jobs;    /* QMP jobs started, for unique job ids */
	struct vm_migrate_addr migrate_in; /* where a migration destination listens, or "" */
	int64_t resumed_at_ms;		   /* wall clock of a migrated guest's resume, or 0 */

	/* the agent channel */
	int agent_fd;
	struct agent_decoder dec;
	struct agent_writer w;
	struct buf outq;	  /* encoded frames not yet written */
	uint64_t host_seq;	  /* seq of the next frame we send */
	uint64_t guest_seq;	  /* last guest seq received */
	uint64_t guest_seq_acked; /* last guest seq we acknowledged */
	uint32_t next_stream;
	bool connected;	     /* HELLO_REPLY received */
	uint32_t agent_caps; /* AGENT_CAP_* of the last HELLO_REPLY */
	bool resyncing; /* before HELLO_REPLY: skip bytes that precede it (a frame cut short) */

	/* vm_cancel() from a signal handler or another thread */
	int cancel_pipe[2];
	volatile sig_atomic_t cancel_requested;
	/* vm_resize(): (rows << 16 | cols) | RESIZE_PENDING, taken by channel_run */
	volatile sig_atomic_t resize_request;
	/* vm_detach(): the running exec returns -VM_EDETACHED, its stream kept here */
	volatile sig_atomic_t detach_requested;
	uint32_t detached_stream;
	/*
	 * A detached command's frames that arrive while another operation runs
	 * (the refresh after a migration): kept, encoded, for vm_exec_resume.
	 */
	uint32_t held_stream;
	struct buf held;
};

/* The node and device names of the disk at SCSI target t (vmcore/disk.c). */
void disk_names(unsigned target, char *node, char *dev, size_t size);

struct channel_op;

/* Returns 1 when the operation is complete, 0 to go on, negative on error. */
typedef int (*channel_frame_fn)(struct vm *vm, struct channel_op *op, const struct agent_frame *f,
				struct vmci_err *err);

struct channel_op {
	const char *what; /* for messages: "running 'make'" */
	uint32_t stream;
	channel_frame_fn on_frame;
	void *ctx;
	int input_fd;	     /* read to EOF and sent as input_type frames; -1: none */
	uint16_t input_type; /* AGENT_STDIN or AGENT_PUT_DATA */
	bool input_done;
	int64_t deadline_ms; /* clock_ms() deadline; 0: none */
	bool cancellable;    /* vm_cancel sends CANCEL for this stream */
	bool pty;	     /* vm_resize sends RESIZE for this stream */
	bool cancel_sent;
};

/* Starts a frame in vm->w; add the payload with agent_put_*(&vm->w, ...). */
void channel_begin(struct vm *vm);
/* Finishes the frame in vm->w and queues it with the next host seq. */
int channel_queue(struct vm *vm, uint16_t type, uint32_t stream, struct vmci_err *err);
/* A fresh stream id for an operation. */
uint32_t channel_new_stream(struct vm *vm);

/*
 * Sends HELLO (again every second) until the agent's HELLO_REPLY, for up
 * to timeout_ms. Fills vm->info.
 */
int channel_handshake(struct vm *vm, int timeout_ms, struct vmci_err *err);

/* Runs op until its handler reports completion, the deadline passes, or the VM fails. */
int channel_run(struct vm *vm, struct channel_op *op, struct vmci_err *err);

/*
 * Starts a new connection to an agent whose state was replaced under it
 * (snapshot-load, a restore from saved state): drops what is in flight
 * both ways and handshakes within timeout_ms, releasing every frame the
 * agent retained from its earlier life.
 */
int channel_restart(struct vm *vm, int timeout_ms, struct vmci_err *err);

/*
 * The first half of channel_restart: drops what is in flight both ways
 * and sends a HELLO, without waiting for its reply. Requests queued
 * behind it reach the agent in the same write: the operation that waits
 * for their answers takes the HELLO_REPLY on its way (vm->connected).
 */
int channel_restart_send(struct vm *vm, struct vmci_err *err);

/* Writes what is queued as far as the socket takes it now, without waiting. */
int channel_send(struct vm *vm, const char *what, struct vmci_err *err);

/* vmcore/vm.c: vm_refresh_guest in two halves, so that other work fits between. */
struct guest_refresh {
	struct channel_op op;
	int replies;
	struct agent_result result[2]; /* clock, then entropy */
	/*
	 * The guest's network is as vmci configured it, with this VM's own
	 * network helper (a revert to the VM's own snapshot): the refresh
	 * leaves it alone. Set it after guest_refresh_send.
	 */
	bool network_kept;
};
/* Sends the clock and entropy requests (on one stream) without waiting for their answers. */
int guest_refresh_send(struct vm *vm, struct guest_refresh *r, struct vmci_err *err);
/*
 * Waits for both answers until deadline_ms, then configures the network of
 * a NAT VM, or only checks its helper runs when the network is kept.
 */
int guest_refresh_wait(struct vm *vm, struct guest_refresh *r, int64_t deadline_ms,
		       struct vmci_err *err);

/*
 * vmcore/vm.c: after the guest's state was replaced (snapshot-load, a
 * restore from saved state): channel_restart and vm_refresh_guest in one
 * round trip, within timeout_ms.
 */
int vm_restart_refreshed(struct vm *vm, int timeout_ms, struct vmci_err *err);
/*
 * Its second half, for a caller that sent channel_restart_send and
 * guest_refresh_send itself and did other work while the guest answers.
 */
int vm_restart_refreshed_wait(struct vm *vm, struct guest_refresh *r, int timeout_ms,
			      struct vmci_err *err);

/*
 * vmcore/template.c, for vm_start with spec->incoming (or spec->loadvm,
 * which QEMU loaded itself) once QMP and the agent socket are connected:
 * loads the saved state, resumes the guest, reconnects the agent within
 * timeout_ms, sets its clock, adds entropy, configures its network and
 * gives the clone its own instance id (not with loadvm).
 */
int template_start(struct vm *vm, const struct vm_spec *spec, int timeout_ms, struct vmci_err *err);

/* Fills err with why the VM is gone: QEMU's exit and the console's last lines. */
int channel_vm_died(struct vm *vm, const char *what, struct vmci_err *err);

/*
 * vmcore/vm.c: starts QEMU under accel (KVM or TCG, already chosen) and
 * waits for the agent, as vm_start does after choosing; the canary uses it.
 */
int vm_boot(const struct vm_spec *spec, enum vm_accel accel, struct vm **out, struct vmci_err *err);

/*
 * vmcore/net.c: starts passt for a NAT VM, its log in run_dir/net.log;
 * *qemu_fd is the close-on-exec end for QEMU's -netdev socket,fd=.
 * The helper quits once every copy of *qemu_fd is closed.
 */
int net_helper_start(const char *run_dir, struct net_helper *h, int *qemu_fd, struct vmci_err *err);
/* Waits for the helper to quit (QEMU is gone), SIGKILL after a second. Idempotent. */
void net_helper_stop(struct net_helper *h);
/*
 * Has the agent configure the guest's interface and DNS afresh
 * (AGENT_NET_CONFIG); nothing for a VM without network.
 */
int net_configure_guest(struct vm *vm, struct vmci_err *err);
/* -EPIPE, saying so, when the VM's network helper has exited; 0 otherwise. */
int net_helper_check(struct vm *vm, struct vmci_err *err);
/*
 * vmcore/vm.c: the first half of vm_boot: starts QEMU (incoming: as the
 * destination of a live migration, -incoming defer) and connects QMP and
 * the agent socket, without waiting for the agent. On failure nothing
 * runs and err ends with QEMU's last words.
 */
int vm_launch(const struct vm_spec *spec, enum vm_accel accel, bool incoming, struct vm **out,
	      struct vmci_err *err);
/* A launched VM failed with rc: adds QEMU's exit and last console lines to err, stops and frees it.
 */
void vm_launch_failed(struct vm *vm, int rc, struct vmci_err *err);

/*
 * Reconnects to an agent that lives on (after a live migration, or in a
 * new host process): handshakes within timeout_ms, asking the agent to
 * re-send every frame after resume_after (the last guest seq this host,
 * or the one before it, processed).
 */
int channel_resume(struct vm *vm, uint64_t resume_after, int timeout_ms, struct vmci_err *err);

/* vmcore/accel.c: a KVM guest failed (failure: the telling console line); AUTO now picks TCG. */
void accel_record_runtime_failure(enum vm_arch arch, const char *failure);
/* Whether requested, after $VMCI_ACCEL, is AUTO: vmci may choose, and fall back. */
bool accel_is_auto(enum vm_accel requested);

#endif
