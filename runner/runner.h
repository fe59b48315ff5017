/*
 * runner: executing work in VMs. It joins images (what to boot) and
 * vmcore (how to run it), and pipelines (what to run). Each concern has a
 * header of its own, which says its contract; this one includes them all
 * for front ends that use most of them.
 *
 *   runner/guest.h      a VM booted from a golden image; the accelerator canary
 *   runner/handoff.h    a running job's VM handed to another process
 *   runner/run_dir.h    a VM's private run directory, swept when its owner dies
 *   runner/template.h   ready-state templates
 *   runner/pool.h       the warm pool (clean snapshots, reverts)
 *   runner/build.h      the images work needs, setup commands included
 *   runner/workspace.h  the files a job starts with
 *   runner/local_run.h  `vmci run`'s directory per run
 *   runner/log_cap.h    a job's log, capped
 *   runner/result.h     how jobs and steps end; the sink
 *   runner/sched.h      scheduling a run, cancelling jobs
 *   runner/vmsource.h   where jobs get VMs
 *   runner/executor.h   one job in one VM
 *   runner/interrupt.h  interruption by signal
 *   runner/store.h      the service's store (not included here: the service's own)
 */
#ifndef VMCI_RUNNER_H
#define VMCI_RUNNER_H

#include "runner/build.h"
#include "runner/executor.h"
#include "runner/guest.h"
#include "runner/handoff.h"
#include "runner/interrupt.h"
#include "runner/local_run.h"
#include "runner/log_cap.h"
#include "runner/pool.h"
#include "runner/result.h"
#include "runner/run_dir.h"
#include "runner/sched.h"
#include "runner/template.h"
#include "runner/vmsource.h"
#include "runner/workspace.h"

#endif
