/*
 * Synthetic kernel modules for the images tests: a minimal ELF64
 * relocatable file with a .modinfo section, enough for images/kmod.c.
 *
 *   [ELF header][.modinfo bytes][.shstrtab bytes][pad][3 section headers]
 */
#ifndef VMCI_TEST_FAKE_MODULE_H
#define VMCI_TEST_FAKE_MODULE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fake_put(uint8_t *p, uint64_t v, int width, bool be)
{
	for (int i = 0; i < width; i++)
		p[be ? width - 1 - i : i] = (uint8_t)(v >> (8 * i));
}

/*
 * Builds a module whose .modinfo holds modinfo (len bytes, NUL-separated
 * "key=value" strings). Returns a malloc'd buffer and its size in *size.
 */
static uint8_t *fake_module(const char *modinfo, size_t len, bool be, size_t *size)
{
	static const char shstr[] = "\0.modinfo\0.shstrtab";
	size_t info_off = 64, str_off = info_off + len,
	       sh_off = (str_off + sizeof(shstr) + 7) & ~7ul;
	*size = sh_off + 3 * 64;
	uint8_t *p = calloc(1, *size);
	memcpy(p, "\177ELF", 4);
	p[4] = 2;		     /* ELFCLASS64 */
	p[5] = be ? 2 : 1;	     /* byte order */
	p[6] = 1;		     /* EV_CURRENT */
	fake_put(p + 16, 1, 2, be);  /* ET_REL */
	fake_put(p + 18, 62, 2, be); /* EM_X86_64 */
	fake_put(p + 20, 1, 4, be);
	fake_put(p + 40, sh_off, 8, be);
	fake_put(p + 52, 64, 2, be);
	fake_put(p + 58, 64, 2, be);
	fake_put(p + 60, 3, 2, be);
	fake_put(p + 62, 2, 2, be);
	memcpy(p + info_off, modinfo, len);
	memcpy(p + str_off, shstr, sizeof(shstr));
	uint8_t *sh = p + sh_off;
	/* [1] .modinfo: name at 1, PROGBITS */
	fake_put(sh + 64 + 0, 1, 4, be);
	fake_put(sh + 64 + 4, 1, 4, be);
	fake_put(sh + 64 + 24, info_off, 8, be);
	fake_put(sh + 64 + 32, len, 8, be);
	/* [2] .shstrtab: name at 10, STRTAB */
	fake_put(sh + 128 + 0, 10, 4, be);
	fake_put(sh + 128 + 4, 3, 4, be);
	fake_put(sh + 128 + 24, str_off, 8, be);
	fake_put(sh + 128 + 32, sizeof(shstr), 8, be);
	return p;
}

/* A module called name that depends on deps ("a,b" or ""). */
static uint8_t *fake_named_module(const char *name, const char *deps, size_t *size)
{
	char info[512];
	int n = snprintf(info, sizeof(info), "license=GPL%cname=%s%cdepends=%s%cvermagic=test", 0,
			 name, 0, deps, 0);
	return fake_module(info, (size_t)n + 1, false, size);
}

#endif
