/* Guest architectures: their names, QEMU binaries and Debian packages. */
#include "vmcore/vmcore.h"

#include <string.h>

static const struct {
	enum vm_arch arch;
	const char *name;
	const char *qemu;
	const char *package;
} arches[] = {
    {VM_ARCH_X86_64, "x86_64", "qemu-system-x86_64", "qemu-system-x86"},
    {VM_ARCH_AARCH64, "aarch64", "qemu-system-aarch64", "qemu-system-arm"},
};

const char *vm_arch_name(enum vm_arch arch)
{
	for (size_t i = 0; i < ARRAY_LEN(arches); i++)
		if (arches[i].arch == arch)
			return arches[i].name;
	return "unknown";
}

int vm_arch_parse(const char *name, enum vm_arch *out)
{
	for (size_t i = 0; name && i < ARRAY_LEN(arches); i++) {
		if (!strcmp(arches[i].name, name)) {
			*out = arches[i].arch;
			return 0;
		}
	}
	return -1;
}

const char *vm_qemu_binary(enum vm_arch arch)
{
	for (size_t i = 0; i < ARRAY_LEN(arches); i++)
		if (arches[i].arch == arch)
			return arches[i].qemu;
	return "qemu-system-unknown";
}

const char *vm_qemu_package(enum vm_arch arch)
{
	for (size_t i = 0; i < ARRAY_LEN(arches); i++)
		if (arches[i].arch == arch)
			return arches[i].package;
	return "qemu-system";
}
