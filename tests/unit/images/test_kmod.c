/* images/kmod.c: .modinfo parsing, dependency order, compressed modules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "images/internal.h"
#include "fake_module.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>

static void test_modinfo_reads_name_depends_and_softdep(void **state)
{
	static const char info[] =
	    "license=GPL\0name=virtio_net\0depends=virtio_ring,net_failover\0"
	    "softdep=pre: crc32c sha256 post: later\0\0\0";
	size_t len;
	uint8_t *elf = fake_module(info, sizeof(info), false, &len);
	struct img_modinfo mi;
	assert_int_equal(img_modinfo_parse(elf, len, &mi, NULL), 0);
	assert_string_equal(mi.name, "virtio_net");
	assert_string_equal(mi.depends, "virtio_ring,net_failover");
	assert_string_equal(mi.softdep, "crc32c sha256");
	free(elf);
}

static void test_modinfo_reads_big_endian_modules(void **state)
{
	static const char info[] = "name=be_mod\0depends=a";
	size_t len;
	uint8_t *elf = fake_module(info, sizeof(info), true, &len);
	struct img_modinfo mi;
	assert_int_equal(img_modinfo_parse(elf, len, &mi, NULL), 0);
	assert_string_equal(mi.name, "be_mod");
	assert_string_equal(mi.depends, "a");
	free(elf);
}

static void test_modinfo_rejects_every_truncation(void **state)
{
	size_t len;
	uint8_t *elf = fake_named_module("m", "a,b", &len);
	for (size_t n = 0; n < len; n++) {
		/* A copy of exactly n bytes, so a sanitizer sees any read past it. */
		uint8_t *cut = malloc(n ? n : 1);
		memcpy(cut, elf, n);
		struct img_modinfo mi;
		struct vmci_err err = {0};
		assert_true(img_modinfo_parse(cut, n, &mi, &err) < 0);
		assert_true(err.msg[0] != 0);
		free(cut);
	}
	free(elf);
}

static void test_modinfo_survives_corrupted_headers(void **state)
{
	size_t len;
	uint8_t *elf = fake_named_module("m", "a", &len);
	uint8_t *bad = malloc(len);
	srand(1);
	for (int round = 0; round < 20000; round++) {
		memcpy(bad, elf, len);
		for (int k = 0; k < 4; k++)
			bad[rand() % 64 + (k & 1 ? (int)len - 192 : 0)] = (uint8_t)rand();
		struct img_modinfo mi;
		img_modinfo_parse(bad, len, &mi, NULL); /* any result, never a bad read */
	}
	free(bad);
	free(elf);
}

static void test_modinfo_without_section_is_an_error(void **state)
{
	size_t len;
	uint8_t *elf = fake_named_module("m", "", &len);
	memcpy(elf + len - 192 + 64, "\0\0\0\0", 4); /* .modinfo's name -> "" */
	struct img_modinfo mi;
	struct vmci_err err = {0};
	assert_int_equal(img_modinfo_parse(elf, len, &mi, &err), -ENOENT);
	assert_non_null(strstr(err.msg, ".modinfo"));
	free(elf);
}

static void add_module(struct img_kmods *s, const char *relpath, const char *name, const char *deps,
		       int expect)
{
	size_t len;
	uint8_t *elf = fake_named_module(name, deps, &len);
	assert_int_equal(img_kmods_add(s, relpath, elf, len, NULL), expect);
	free(elf);
}

static void test_order_puts_dependencies_first(void **state)
{
	const char *const wanted[] = {"top", NULL};
	struct img_kmods *s = img_kmods_new(wanted);
	add_module(s, "kernel/z/top.ko", "top", "mid,base", 1);
	add_module(s, "kernel/y/mid.ko", "mid", "base", 1);
	add_module(s, "kernel/x/base.ko", "base", "", 1);
	add_module(s, "kernel/x/other.ko", "other", "base", 0);
	assert_int_equal(img_kmods_order(s, NULL), 0);
	assert_int_equal(img_kmods_count(s), 3);
	assert_string_equal(img_kmods_at(s, 0)->name, "base");
	assert_string_equal(img_kmods_at(s, 1)->name, "mid");
	assert_string_equal(img_kmods_at(s, 2)->name, "top");
	assert_string_equal(img_kmods_at(s, 2)->file, "top.ko");
	assert_string_equal(img_kmods_at(s, 2)->relpath, "kernel/z/top.ko");
	assert_non_null(img_kmods_at(s, 0)->data);
	assert_null(img_kmods_at(s, 3));
	img_kmods_free(s);
}

static void test_order_takes_missing_modules_as_built_in(void **state)
{
	const char *const wanted[] = {"virtio_blk", "ext4", NULL};
	struct img_kmods *s = img_kmods_new(wanted);
	add_module(s, "kernel/drivers/block/virtio_blk.ko", "virtio_blk", "virtio_ring,virtio", 1);
	assert_int_equal(img_kmods_order(s, NULL), 0);
	assert_int_equal(img_kmods_count(s), 1);
	assert_string_equal(img_kmods_at(s, 0)->name, "virtio_blk");
	img_kmods_free(s);
}

static void test_wanted_name_neither_module_nor_built_in_is_unknown(void **state)
{
	const char *const wanted[] = {"virtio_blk", "ext4", "virtio-rgn", "crc32c", NULL};
	struct img_kmods *s = img_kmods_new(wanted);
	add_module(s, "kernel/drivers/block/virtio_blk.ko", "virtio_blk", "", 1);
	/* Without the kernel's list of built-in modules, nothing can be called unknown. */
	assert_null(img_kmods_unknown(s, 0));
	static const char builtin[] = "kernel/fs/ext4/ext4.ko\nkernel/crypto/crc32c_generic.ko\n"
				      "kernel/lib/crc32c.ko";
	assert_int_equal(img_kmods_builtin(s, builtin, sizeof(builtin) - 1, NULL), 0);
	assert_int_equal(img_kmods_order(s, NULL), 0);
	assert_string_equal(img_kmods_unknown(s, 0), "virtio_rgn");
	assert_null(img_kmods_unknown(s, 1));
	img_kmods_free(s);
}

static void test_order_reports_a_dependency_cycle(void **state)
{
	const char *const wanted[] = {"a", NULL};
	struct img_kmods *s = img_kmods_new(wanted);
	add_module(s, "kernel/a.ko", "a", "b", 1);
	add_module(s, "kernel/b.ko", "b", "a", 1);
	struct vmci_err err = {0};
	assert_int_equal(img_kmods_order(s, &err), -ELOOP);
	assert_non_null(strstr(err.msg, "depend on each other"));
	img_kmods_free(s);
}

static void test_order_counts_modules_seen_before_they_were_needed(void **state)
{
	const char *const wanted[] = {"virtio_net", NULL};
	struct img_kmods *s = img_kmods_new(wanted);
	/* A package lists drivers/net/net_failover.ko before drivers/net/virtio_net.ko. */
	add_module(s, "kernel/drivers/net/net_failover.ko", "net_failover", "failover", 0);
	add_module(s, "kernel/drivers/net/virtio_net.ko", "virtio_net", "net_failover", 1);
	add_module(s, "kernel/net/core/failover.ko", "failover", "", 1);
	assert_int_equal(img_kmods_order(s, NULL), 1);
	/* The second pass: only the missing one is kept again. */
	add_module(s, "kernel/drivers/net/net_failover.ko", "net_failover", "failover", 1);
	add_module(s, "kernel/drivers/net/virtio_net.ko", "virtio_net", "net_failover", 0);
	assert_int_equal(img_kmods_order(s, NULL), 0);
	assert_int_equal(img_kmods_count(s), 3);
	assert_string_equal(img_kmods_at(s, 0)->name, "failover");
	assert_string_equal(img_kmods_at(s, 1)->name, "net_failover");
	assert_non_null(img_kmods_at(s, 1)->data);
	assert_string_equal(img_kmods_at(s, 2)->name, "virtio_net");
	img_kmods_free(s);
}

static void test_names_match_with_dashes_or_underscores(void **state)
{
	const char *const wanted[] = {"virtio-rng", NULL};
	struct img_kmods *s = img_kmods_new(wanted);
	add_module(s, "kernel/drivers/char/hw_random/virtio-rng.ko.xz", "virtio_rng", "", 1);
	assert_int_equal(img_kmods_order(s, NULL), 0);
	assert_int_equal(img_kmods_count(s), 1);
	assert_string_equal(img_kmods_at(s, 0)->name, "virtio_rng");
	assert_string_equal(img_kmods_at(s, 0)->file, "virtio-rng.ko");
	img_kmods_free(s);
}

static void test_softdep_pre_modules_load_first(void **state)
{
	static const char info[] = "name=ext4\0depends=jbd2\0softdep=pre: crc32c_generic\0";
	const char *const wanted[] = {"ext4", NULL};
	struct img_kmods *s = img_kmods_new(wanted);
	size_t len;
	uint8_t *elf = fake_module(info, sizeof(info), false, &len);
	assert_int_equal(img_kmods_add(s, "kernel/fs/ext4/ext4.ko", elf, len, NULL), 1);
	free(elf);
	add_module(s, "kernel/fs/jbd2/jbd2.ko", "jbd2", "", 1);
	add_module(s, "kernel/crypto/crc32c_generic.ko", "crc32c_generic", "", 1);
	assert_int_equal(img_kmods_order(s, NULL), 0);
	assert_int_equal(img_kmods_count(s), 3);
	assert_string_equal(img_kmods_at(s, 0)->name, "jbd2");
	assert_string_equal(img_kmods_at(s, 1)->name, "crc32c_generic");
	assert_string_equal(img_kmods_at(s, 2)->name, "ext4");
	img_kmods_free(s);
}

/* data compressed with one of libarchive's filters, as a "raw" single stream. */
static void compress(int (*add_filter)(struct archive *), const void *data, size_t len,
		     struct buf *out)
{
	struct archive *a = archive_write_new();
	assert_int_equal(archive_write_set_format_raw(a), ARCHIVE_OK);
	assert_int_equal(add_filter(a), ARCHIVE_OK);
	assert_int_equal(buf_reserve(out, len + 4096), 0);
	size_t used = 0;
	assert_int_equal(archive_write_open_memory(a, out->data, out->cap, &used), ARCHIVE_OK);
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, "m");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_size(e, (la_int64_t)len);
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	assert_int_equal(archive_write_data(a, data, len), (la_ssize_t)len);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_entry_free(e);
	archive_write_free(a);
	out->len = used;
}

static void test_decompresses_xz_zst_and_gz_modules(void **state)
{
	size_t len;
	uint8_t *elf = fake_named_module("squeezed", "a", &len);
	static const struct {
		const char *file;
		int (*filter)(struct archive *);
	} kinds[] = {{"m.ko.xz", archive_write_add_filter_xz},
		     {"m.ko.zst", archive_write_add_filter_zstd},
		     {"m.ko.gz", archive_write_add_filter_gzip}};
	for (size_t i = 0; i < ARRAY_LEN(kinds); i++) {
		struct buf packed = {0}, plain = {0};
		compress(kinds[i].filter, elf, len, &packed);
		assert_true(img_kmod_is_module(kinds[i].file));
		assert_int_equal(img_kmod_decompress(kinds[i].file, packed.data, packed.len,
						     1 << 20, &plain, NULL),
				 0);
		assert_int_equal(plain.len, len);
		assert_memory_equal(plain.data, elf, len);
		struct vmci_err err = {0};
		plain.len = 0;
		assert_int_equal(
		    img_kmod_decompress(kinds[i].file, packed.data, packed.len, 16, &plain, &err),
		    -EFBIG);
		buf_free(&packed);
		buf_free(&plain);
	}
	assert_false(img_kmod_is_module("modules.order"));
	assert_false(img_kmod_is_module("x.kox"));
	free(elf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_modinfo_reads_name_depends_and_softdep),
	    cmocka_unit_test(test_modinfo_reads_big_endian_modules),
	    cmocka_unit_test(test_modinfo_rejects_every_truncation),
	    cmocka_unit_test(test_modinfo_survives_corrupted_headers),
	    cmocka_unit_test(test_modinfo_without_section_is_an_error),
	    cmocka_unit_test(test_order_puts_dependencies_first),
	    cmocka_unit_test(test_order_takes_missing_modules_as_built_in),
	    cmocka_unit_test(test_wanted_name_neither_module_nor_built_in_is_unknown),
	    cmocka_unit_test(test_order_reports_a_dependency_cycle),
	    cmocka_unit_test(test_order_counts_modules_seen_before_they_were_needed),
	    cmocka_unit_test(test_names_match_with_dashes_or_underscores),
	    cmocka_unit_test(test_softdep_pre_modules_load_first),
	    cmocka_unit_test(test_decompresses_xz_zst_and_gz_modules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
