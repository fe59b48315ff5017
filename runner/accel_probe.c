/* The accelerator canary on demand, on the smallest image of the host's architecture. */
#include "runner/build.h"
#include "runner/guest.h"

#include <errno.h>
#include <stdio.h>
#include <sys/utsname.h>

int runner_accel_probe(const struct runner_guest_opts *opts, struct vm_accel_verdict *out,
		       struct vmci_err *err)
{
	struct utsname u;
	enum vm_arch arch;
	if (uname(&u) < 0 || vm_arch_parse(u.machine, &arch))
		return vmci_err_set(err, ENOTSUP,
				    "vmci has no guests for this host's architecture");
	char image[64];
	snprintf(image, sizeof(image), "busybox-%s", vm_arch_name(arch));
	struct img_boot img;
	int rc = runner_image_ensure(image, opts ? opts->progress : NULL,
				     opts ? opts->progress_ctx : NULL, &img, err);
	if (rc)
		return rc;
	rc = vm_accel_canary(arch, img.kernel, img.initrd, 0, out, err);
	if (rc)
		return rc;
	return vm_accel_verdict_write(out, err);
}
