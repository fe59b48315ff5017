/* vmci doctor: what this host can do, and what it is missing. */
#include "cli/cli.h"

#include "images/images.h"
#include "runner/runner.h"
#include "vmcore/vmcore.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char doctor_usage[] =
    "Usage: vmci doctor [--probe] [--json]\n"
    "\n"
    "Says which accelerator VMs will use and why, which QEMU binaries and Debian\n"
    "packages are present or missing, and where images are stored. Exits 1 when\n"
    "something vmci needs is missing.\n"
    "\n"
    "KVM is used only where a canary guest booted under it (and faster than under\n"
    "TCG); the first VM on a host boots the canary and the verdict is kept in\n"
    "$VMCI_HOME/accel.json until the kernel, QEMU or CPU changes. --probe boots the\n"
    "canary again now.";

static bool package_installed(const char *pkg)
{
	char *argv[] = {"dpkg-query", "-W", "-f=${Status}", (char *)pkg, NULL};
	struct buf out = {0};
	struct vmci_err err;
	bool ok = run_command(argv, &out, &err) == 0 && strstr(buf_cstr(&out), "ok installed");
	buf_free(&out);
	return ok;
}

/* The verdict for this host's key as JSON, or null when there is none. */
static json_t *verdict_json(void)
{
	struct vm_accel_verdict v;
	if (!vm_accel_verdict_read(VM_ARCH_X86_64, &v))
		return json_null();
	return json_pack("{s:s, s:b, s:o, s:o, s:s, s:s, s:I}", "key", v.key, "kvm_booted",
			 v.kvm_booted, "kvm_ms",
			 v.kvm_ms >= 0 ? json_integer(v.kvm_ms) : json_null(), "tcg_ms",
			 v.tcg_ms >= 0 ? json_integer(v.tcg_ms) : json_null(), "failure", v.failure,
			 "source", v.source, "written_at", (json_int_t)v.written_at);
}

/* --probe: the canary again. Returns false when it could not run. */
static bool accel_probe(bool json, const struct vm_kvm_info *kvm)
{
	if (!kvm->usable) {
		if (!json)
			printf("probe         nothing to prove: KVM is not usable (%s)\n",
			       kvm->reason);
		return true;
	}
	struct cli_progress progress = {.label = "building the canary image"};
	struct runner_guest_opts opts = {.progress = json ? NULL : cli_progress,
					 .progress_ctx = &progress};
	struct vm_accel_verdict v;
	struct vmci_err err;
	if (!json)
		printf("probe         booting a canary guest under KVM, then under TCG...\n");
	int rc = runner_accel_probe(&opts, &v, &err);
	cli_progress_end(&progress);
	if (rc) {
		cli_error("doctor: the canary could not run: %s", err.msg);
		return false;
	}
	if (!json) {
		if (v.kvm_booted)
			printf("probe         KVM booted the canary in %lld ms, TCG in %lld ms\n",
			       (long long)v.kvm_ms, (long long)v.tcg_ms);
		else
			printf("probe         KVM failed (%s); TCG booted it in %lld ms\n",
			       v.failure, (long long)v.tcg_ms);
	}
	return true;
}

int cmd_doctor(int argc, char **argv)
{
	bool json = false, probe = false;
	const struct cli_option opts[] = {
	    {0, "json", OPT_FLAG, &json, NULL, "print a JSON object for scripts"},
	    {0, "probe", OPT_FLAG, &probe, NULL, "boot the accelerator canary again, now"},
	    {0},
	};
	int first = cli_parse(argc, argv, opts, doctor_usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;

	bool healthy = true;
	json_t *report = json_object();
	bool color = !json && vmci_use_color(STDOUT_FILENO);
	const char *ok = color ? "\033[32mok\033[0m" : "ok";
	const char *missing = color ? "\033[31mmissing\033[0m" : "missing";
	const char *optional = color ? "\033[33mmissing (optional)\033[0m" : "missing (optional)";

	struct vm_kvm_info kvm;
	vm_kvm_probe(&kvm);
	if (probe && !accel_probe(json, &kvm))
		healthy = false;
	char why[512];
	enum vm_accel accel = vm_accel_choose(VM_ACCEL_AUTO, VM_ARCH_X86_64, why, sizeof(why));
	const char *accel_name = accel == VM_ACCEL_KVM	 ? "kvm"
				 : accel == VM_ACCEL_TCG ? "tcg"
							 : "undecided";
	json_object_set_new(report, "accelerator", json_string(accel_name));
	json_object_set_new(report, "accelerator_reason", json_string(why));
	json_object_set_new(report, "accelerator_verdict", verdict_json());
	char key[VM_ACCEL_KEY_MAX];
	vm_accel_key(VM_ARCH_X86_64, key, sizeof(key));
	json_object_set_new(report, "accelerator_key", json_string(key));
	json_t *jkvm = json_object();
	json_object_set_new(jkvm, "usable", json_boolean(kvm.usable));
	json_object_set_new(jkvm, "api_version", json_integer(kvm.api_version));
	json_object_set_new(jkvm, "max_vcpus", json_integer(kvm.max_vcpus));
	json_object_set_new(jkvm, "dirty_log", json_boolean(kvm.dirty_log));
	json_object_set_new(jkvm, "reason", json_string(kvm.reason));
	json_object_set_new(report, "kvm", jkvm);
	if (!json) {
		printf("accelerator   %s: %s\n",
		       accel == VM_ACCEL_KVM   ? "KVM"
		       : accel == VM_ACCEL_TCG ? "TCG (software)"
					       : "not decided yet",
		       why);
		if (kvm.usable)
			printf("kvm           API %d, up to %d vCPUs, dirty logging %s\n",
			       kvm.api_version, kvm.max_vcpus, kvm.dirty_log ? "yes" : "no");
		else
			printf("kvm           not usable: %s\n", kvm.reason);
	}

	json_t *jqemu = json_object();
	const enum vm_arch arches[] = {VM_ARCH_X86_64, VM_ARCH_AARCH64};
	for (size_t i = 0; i < ARRAY_LEN(arches); i++) {
		char path[4096];
		const char *bin = vm_qemu_binary(arches[i]);
		bool found = path_search(bin, path, sizeof(path)) == 0;
		json_object_set_new(jqemu, vm_arch_name(arches[i]),
				    found ? json_string(path) : json_null());
		if (!json)
			printf("qemu %-8s %s%s%s\n", vm_arch_name(arches[i]), found ? path : "",
			       found ? "" : (arches[i] == VM_ARCH_X86_64 ? missing : optional),
			       found ? "" : "");
		if (!found && arches[i] == VM_ARCH_X86_64)
			healthy = false;
	}
	json_object_set_new(report, "qemu", jqemu);

	json_t *jpkgs = json_object();
	/* What vmci needs at run time, from the table make deps installs (packages.txt). */
	struct pkg_info pkg;
	for (size_t pos = 0; pkg_next(&pos, &pkg);) {
		if (pkg.need != PKG_RUN && pkg.need != PKG_OPTIONAL)
			continue;
		bool required = pkg.need == PKG_RUN;
		bool have = package_installed(pkg.name);
		json_object_set_new(jpkgs, pkg.name, json_boolean(have));
		if (!json)
			printf("package       %-16s %s (%s)\n", pkg.name,
			       have ? ok : (required ? missing : optional), pkg.purpose);
		if (!have && required)
			healthy = false;
	}
	json_object_set_new(report, "packages", jpkgs);

	char agent[4096];
	struct vmci_err err;
	bool have_agent = img_agent_path("x86_64", agent, sizeof(agent), &err) == 0;
	json_object_set_new(report, "agent_x86_64", have_agent ? json_string(agent) : json_null());
	json_object_set_new(report, "image_store", json_string(img_store_root()));
	if (!json) {
		printf("agent x86_64  %s\n", have_agent ? agent : err.msg);
		printf("image store   %s\n", img_store_root());
	}
	if (!have_agent)
		healthy = false;

	char **names = NULL;
	if (img_recipe_names(&names, &err)) {
		cli_error("doctor: %s", err.msg);
		healthy = false;
	}
	json_t *jimages = json_object();
	for (size_t i = 0; names && names[i]; i++) {
		struct img_boot img;
		bool built = img_find(names[i], &img, &err) == 0;
		json_object_set_new(jimages, names[i],
				    built ? json_string(img.digest) : json_null());
		if (!json)
			printf("image         %-16s %s\n", names[i],
			       built ? img.digest : "not built yet (built on first use)");
	}
	img_names_free(names);
	json_object_set_new(report, "images", jimages);
	json_object_set_new(report, "healthy", json_boolean(healthy));
	if (json) {
		char *text = json_dumps(report, JSON_INDENT(2) | JSON_SORT_KEYS);
		printf("%s\n", text);
		free(text);
	} else if (!healthy) {
		printf("\nSomething vmci needs is missing: run 'make deps' in the vmci source "
		       "tree.\n");
	}
	json_decref(report);
	return healthy ? EXIT_OK : EXIT_FAILED;
}
