/*
 * Guest architectures: their names and QEMU binaries, and the Debian
 * packages of those binaries as packages.txt (common/packages.c) names them.
 */
#include "vmcore/vmcore.h"

#include <pthread.h>
#include <string.h>

static const struct {
	enum vm_arch arch;
	const char *name;
	const char *qemu;
} arches[] = {
    {VM_ARCH_X86_64, "x86_64", "qemu-system-x86_64"},
    {VM_ARCH_AARCH64, "aarch64", "qemu-system-aarch64"},
};

/*
 * The package of each arch's QEMU, looked up once in the table compiled
 * from packages.txt (which cannot change while vmci runs), so that
 * vm_qemu_package can hand out a string that lives as long as the process.
 */
static char packages[ARRAY_LEN(arches)][64];
static pthread_once_t packages_once = PTHREAD_ONCE_INIT;

static void find_packages(void)
{
	for (size_t i = 0; i < ARRAY_LEN(arches); i++)
		pkg_providing(arches[i].qemu, packages[i], sizeof(packages[i]));
}

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
	pthread_once(&packages_once, find_packages);
	for (size_t i = 0; i < ARRAY_LEN(arches); i++)
		if (arches[i].arch == arch)
			return packages[i][0] ? packages[i] : NULL;
	return NULL;
}
