/*
 * images/busybox.c: what the recipe checks before it fetches anything. A
 * real build needs the network and is checked by the VM tests; these stay
 * offline because every failure here happens before the kernel is resolved.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char home[256];

/* The agent checks come after busybox's; without busybox-static they cannot be reached. */
static bool have_static_busybox(void)
{
	struct buf out = {0};
	char *argv[] = {"/bin/busybox", "--list-full", NULL};
	bool ok = run_command(argv, &out, NULL) == 0 && strstr(buf_cstr(&out), "bin/sh");
	buf_free(&out);
	return ok;
}

static void expect_failure(const char *agent_dir, const char *needle)
{
	setenv("VMCI_AGENT_DIR", agent_dir, 1);
	struct img_boot boot;
	struct vmci_err err = {0};
	assert_true(img_ensure("busybox-x86_64", &boot, NULL, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "busybox-x86_64"));
	assert_non_null(strstr(err.msg, needle));
	assert_int_equal(img_find("busybox-x86_64", &boot, NULL), -ENOENT);
	unsetenv("VMCI_AGENT_DIR");
}

static void test_missing_agent_says_how_to_build_it(void **state)
{
	if (!have_static_busybox())
		skip();
	expect_failure(home, "make build/agent/vmci-agent-x86_64");
}

static void test_dynamic_agent_is_refused(void **state)
{
	if (!have_static_busybox())
		skip();
	/* Any dynamically linked program stands in for a wrongly built agent. */
	char agent[PATH_MAX];
	fs_path(agent, sizeof(agent), "%s/vmci-agent-x86_64", home);
	assert_int_equal(fs_copy_file("/bin/ls", agent, 0755, true, NULL), 0);
	expect_failure(home, "not a static x86_64 executable");
	unlink(agent);
}

int main(void)
{
	/* Before anything calls vmci_home(), which keeps the first value it sees. */
	snprintf(home, sizeof(home), "%s/vmci-busybox-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(home))
		return 1;
	setenv("VMCI_HOME", home, 1);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_missing_agent_says_how_to_build_it),
	    cmocka_unit_test(test_dynamic_agent_is_refused),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	fs_rm_rf(home, NULL);
	return failed;
}
