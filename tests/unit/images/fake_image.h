/*
 * Fake images for the store tests (clone, gc, pull): published through
 * img_ensure_recipe like any build, with no kernel and no network. A fake
 * image may have a qcow2 root disk, empty or backed by another file.
 * Include after cmocka.h and images/internal.h.
 */
#ifndef VMCI_TESTS_FAKE_IMAGE_H
#define VMCI_TESTS_FAKE_IMAGE_H

#include <stdio.h>
#include <string.h>

/* What the next fake build makes; every field is part of its digest. */
static struct {
	int disk_mb;	     /* 0: no disk */
	const char *backing; /* the disk's backing file, NULL: none */
	const char *copy;    /* a file copied as the disk, NULL: none */
	char input[32];	     /* anything, to make a new digest */
} fake;

static int fake_prepare(struct img_build *b, struct vmci_err *err)
{
	char line[PATH_MAX + 128];
	struct sha256_ctx *ctx = sha256_new();
	snprintf(line, sizeof(line), "%s %d %s %s %s", b->recipe->name, fake.disk_mb,
		 fake.backing ? fake.backing : "-", fake.copy ? fake.copy : "-", fake.input);
	sha256_update(ctx, line, strlen(line));
	if (fake.copy)
		sha256_update_file(ctx, fake.copy, NULL);
	sha256_finish(ctx, b->digest);
	return 0;
}

static int fake_build(struct img_build *b, struct vmci_err *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", b->dir, IMG_KERNEL_FILE);
	int rc = fs_write_atomic(path, "kernel", 6, 0644, err);
	snprintf(path, sizeof(path), "%s/%s", b->dir, IMG_INITRD_FILE);
	if (!rc)
		rc = fs_write_atomic(path, "initrd", 6, 0644, err);
	snprintf(path, sizeof(path), "%s/%s", b->dir, IMG_DISK_FILE);
	if (!rc && fake.copy)
		rc = fs_copy_file(fake.copy, path, 0644, true, err);
	else if (!rc && (fake.disk_mb || fake.backing))
		rc = img_clone_file(fake.backing, path, fake.disk_mb, err);
	if (!rc && (fake.copy || fake.disk_mb || fake.backing))
		json_object_set_new(b->manifest, "disk_file", json_string(IMG_DISK_FILE));
	json_object_set_new(b->manifest, "cmdline", json_string("console=hvc0"));
	return rc;
}

static void fake_finish(struct img_build *b)
{
}

/* Publishes the fake image name (a recipe made on the fly) and fills *out. */
static inline void fake_publish(const char *name, int disk_mb, const char *backing,
				struct img_boot *out)
{
	struct img_recipe r = {.name = name,
			       .arch = "x86_64",
			       .prepare = fake_prepare,
			       .build = fake_build,
			       .finish = fake_finish};
	struct vmci_err err = {0};
	fake.disk_mb = disk_mb;
	fake.backing = backing;
	int rc = img_ensure_recipe(&r, out, NULL, NULL, &err);
	fake.disk_mb = 0;
	fake.backing = NULL;
	if (rc)
		fail_msg("cannot publish the fake image %s: %s", name, err.msg);
}

/* A temporary VMCI_HOME: call first thing in main, before anything reads vmci_home(). */
static inline const char *fake_home(const char *prefix)
{
	static char home[PATH_MAX];
	const char *tmp = getenv("TMPDIR");
	snprintf(home, sizeof(home), "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
	if (!mkdtemp(home))
		return NULL;
	setenv("VMCI_HOME", home, 1);
	return home;
}

#endif
