/*
 * Kernel modules: what a module depends on, and the order to load a set.
 *
 * Debian's linux-image packages ship no modules.dep (depmod runs at
 * install time), so dependencies come from each module's ELF .modinfo
 * section: NUL-separated "key=value" strings, of which "name=",
 * "depends=a,b" and "softdep=pre: c" matter here. The ELF reader is
 * deliberately small and checks every offset against the buffer: module
 * bytes come from a download.
 */
#include "images/internal.h"

#include <archive.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- ELF64 ------------------------------------------------------------ */

struct elf {
	const uint8_t *p;
	size_t len;
	bool be;
};

static uint64_t elf_rd(const struct elf *e, size_t off, size_t width)
{
	uint64_t v = 0;
	for (size_t i = 0; i < width; i++) {
		size_t k = e->be ? i : width - 1 - i;
		v = (v << 8) | e->p[off + k];
	}
	return v;
}

/* True when [off, off + n) lies inside the buffer. */
static bool elf_in(const struct elf *e, uint64_t off, uint64_t n)
{
	return off <= e->len && n <= e->len - off;
}

/* Copies value into out (size bytes), appending with sep when out is not empty. */
static void append_field(char *out, size_t size, const char *value, size_t vlen, char sep)
{
	size_t used = strlen(out);
	if (used && used + 1 < size)
		out[used++] = sep;
	if (vlen > size - 1 - used)
		vlen = size - 1 - used;
	memcpy(out + used, value, vlen);
	out[used + vlen] = 0;
}

/* "pre: a b post: c" -> the pre modules, appended space-separated. */
static void parse_softdep(const char *v, size_t vlen, char *out, size_t size)
{
	bool pre = false;
	const char *end = v + vlen;
	while (v < end) {
		while (v < end && *v == ' ')
			v++;
		const char *w = v;
		while (v < end && *v != ' ')
			v++;
		size_t n = (size_t)(v - w);
		if (n == 0)
			break;
		if (n == 4 && !memcmp(w, "pre:", 4))
			pre = true;
		else if (n == 5 && !memcmp(w, "post:", 5))
			pre = false;
		else if (pre)
			append_field(out, size, w, n, ' ');
	}
}

static void parse_modinfo_strings(const char *s, size_t len, struct img_modinfo *out)
{
	const char *end = s + len;
	while (s < end) {
		const char *nul = memchr(s, 0, (size_t)(end - s));
		size_t n = nul ? (size_t)(nul - s) : (size_t)(end - s);
		const char *eq = memchr(s, '=', n);
		if (eq) {
			size_t klen = (size_t)(eq - s);
			const char *v = eq + 1;
			size_t vlen = n - klen - 1;
			if (klen == 4 && !memcmp(s, "name", 4)) {
				out->name[0] = 0;
				append_field(out->name, sizeof(out->name), v, vlen, 0);
			} else if (klen == 7 && !memcmp(s, "depends", 7) && vlen) {
				append_field(out->depends, sizeof(out->depends), v, vlen, ',');
			} else if (klen == 7 && !memcmp(s, "softdep", 7)) {
				parse_softdep(v, vlen, out->softdep, sizeof(out->softdep));
			}
		}
		s += n + 1;
	}
}

int img_modinfo_parse(const void *data, size_t len, struct img_modinfo *out, struct vmci_err *err)
{
	memset(out, 0, sizeof(*out));
	struct elf e = {.p = data, .len = len};
	if (len < 64 || memcmp(e.p, "\177ELF", 4) || e.p[4] != 2 || (e.p[5] != 1 && e.p[5] != 2))
		return vmci_err_set(err, EINVAL, "%s: not an ELF64 file", __func__);
	e.be = e.p[5] == 2;
	uint64_t shoff = elf_rd(&e, 40, 8);
	uint64_t shentsize = elf_rd(&e, 58, 2);
	uint64_t shnum = elf_rd(&e, 60, 2);
	uint64_t shstrndx = elf_rd(&e, 62, 2);
	if (shentsize < 64 || !elf_in(&e, shoff, shentsize))
		return vmci_err_set(err, EINVAL, "%s: bad section header table", __func__);
	/* Extended numbering: the real counts live in section 0. */
	if (shnum == 0)
		shnum = elf_rd(&e, shoff + 32, 8);
	if (shstrndx == 0xffff)
		shstrndx = elf_rd(&e, shoff + 40, 4);
	if (shnum == 0 || shnum > len / shentsize || !elf_in(&e, shoff, shnum * shentsize) ||
	    shstrndx >= shnum)
		return vmci_err_set(err, EINVAL, "%s: bad section header table", __func__);

	uint64_t str_hdr = shoff + shstrndx * shentsize;
	uint64_t str_off = elf_rd(&e, str_hdr + 24, 8);
	uint64_t str_size = elf_rd(&e, str_hdr + 32, 8);
	if (!elf_in(&e, str_off, str_size))
		return vmci_err_set(err, EINVAL, "%s: bad section name table", __func__);

	for (uint64_t i = 0; i < shnum; i++) {
		uint64_t h = shoff + i * shentsize;
		uint64_t name = elf_rd(&e, h, 4);
		uint64_t type = elf_rd(&e, h + 4, 4);
		static const char want[] = ".modinfo";
		if (name >= str_size || str_size - name < sizeof(want) ||
		    memcmp(e.p + str_off + name, want, sizeof(want)))
			continue;
		uint64_t off = elf_rd(&e, h + 24, 8);
		uint64_t size = elf_rd(&e, h + 32, 8);
		if (type == 8 /* SHT_NOBITS */ || !elf_in(&e, off, size))
			return vmci_err_set(err, EINVAL, "%s: bad .modinfo section", __func__);
		parse_modinfo_strings((const char *)e.p + off, size, out);
		return 0;
	}
	return vmci_err_set(err, ENOENT, "%s: no .modinfo section (not a kernel module?)",
			    __func__);
}

/* ---- compressed modules ------------------------------------------------ */

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

bool img_kmod_is_module(const char *file)
{
	return has_suffix(file, ".ko") || has_suffix(file, ".ko.xz") ||
	       has_suffix(file, ".ko.zst") || has_suffix(file, ".ko.gz");
}

int img_kmod_decompress(const char *file, const void *data, size_t len, size_t max, struct buf *out,
			struct vmci_err *err)
{
	if (has_suffix(file, ".ko")) {
		if (len > max)
			return vmci_err_set(err, EFBIG, "module %s is larger than %zu bytes", file,
					    max);
		return buf_append(out, data, len) ? vmci_err_set(err, ENOMEM, "out of memory") : 0;
	}
	struct archive *a = archive_read_new();
	if (!a)
		return vmci_err_set(err, ENOMEM, "out of memory");
	archive_read_support_filter_all(a);
	archive_read_support_format_raw(a);
	struct archive_entry *e;
	int rc;
	if (archive_read_open_memory(a, data, len) != ARCHIVE_OK ||
	    archive_read_next_header(a, &e) != ARCHIVE_OK)
		rc = vmci_err_set(err, EINVAL, "cannot decompress module %s: %s", file,
				  archive_error_string(a));
	else
		rc = img_archive_read_entry(a, file, max, out, err);
	archive_read_free(a);
	return rc;
}

/* ---- the module set ---------------------------------------------------- */

struct kmod_rec {
	struct img_kmod pub;
	char **deps;
	size_t ndeps;
	int mark; /* depth-first search: 0 new, 1 on the path, 2 placed */
};

struct img_kmods {
	char **wanted;
	size_t nwanted;
	char **builtin; /* from modules.builtin */
	size_t nbuiltin;
	bool builtin_known;
	char **needed; /* names known to be needed so far */
	size_t nneeded;
	struct kmod_rec *recs;
	size_t n, cap;
	struct img_kmod *order;
	size_t norder;
};

/* The kernel treats '-' and '_' in module names alike; so do we. */
static char *name_dup(const char *s, size_t n)
{
	char *d = strndup(s, n);
	for (char *p = d; p && *p; p++)
		if (*p == '-')
			*p = '_';
	return d;
}

static int push_str(char ***v, size_t *n, char *s)
{
	if (!s)
		return -ENOMEM;
	char **nv = realloc(*v, (*n + 1) * sizeof(**v));
	if (!nv) {
		free(s);
		return -ENOMEM;
	}
	nv[(*n)++] = s;
	*v = nv;
	return 0;
}

static struct kmod_rec *find_rec(const struct img_kmods *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->recs[i].pub.name, name))
			return &s->recs[i];
	return NULL;
}

static bool is_needed(const struct img_kmods *s, const char *name)
{
	for (size_t i = 0; i < s->nneeded; i++)
		if (!strcmp(s->needed[i], name))
			return true;
	return false;
}

/* Marks name needed, and with it everything it is already known to depend on. */
static int need(struct img_kmods *s, const char *name)
{
	if (is_needed(s, name))
		return 0;
	if (push_str(&s->needed, &s->nneeded, strdup(name)))
		return -ENOMEM;
	struct kmod_rec *r = find_rec(s, name);
	for (size_t i = 0; r && i < r->ndeps; i++)
		if (need(s, r->deps[i]))
			return -ENOMEM;
	return 0;
}

struct img_kmods *img_kmods_new(const char *const *wanted)
{
	struct img_kmods *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	for (size_t i = 0; wanted && wanted[i]; i++) {
		if (push_str(&s->wanted, &s->nwanted, name_dup(wanted[i], strlen(wanted[i]))) ||
		    need(s, s->wanted[s->nwanted - 1])) {
			img_kmods_free(s);
			return NULL;
		}
	}
	return s;
}

void img_kmods_free(struct img_kmods *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nwanted; i++)
		free(s->wanted[i]);
	for (size_t i = 0; i < s->nneeded; i++)
		free(s->needed[i]);
	for (size_t i = 0; i < s->n; i++) {
		struct kmod_rec *r = &s->recs[i];
		free((char *)r->pub.name);
		free((char *)r->pub.relpath);
		free((char *)r->pub.file);
		free((uint8_t *)r->pub.data);
		for (size_t j = 0; j < r->ndeps; j++)
			free(r->deps[j]);
		free(r->deps);
	}
	free(s->wanted);
	for (size_t i = 0; i < s->nbuiltin; i++)
		free(s->builtin[i]);
	free(s->builtin);
	free(s->needed);
	free(s->recs);
	free(s->order);
	free(s);
}

/* Splits a list of module names on any of seps into r->deps. */
static int add_deps(struct kmod_rec *r, const char *list, const char *seps)
{
	for (const char *p = list; *p;) {
		size_t n = strcspn(p, seps);
		if (n && push_str(&r->deps, &r->ndeps, name_dup(p, n)))
			return -ENOMEM;
		p += n;
		p += strspn(p, seps);
	}
	return 0;
}

/* The file name a module gets once decompressed: "virtio-rng.ko". */
static char *ko_name(const char *relpath)
{
	const char *base = strrchr(relpath, '/');
	base = base ? base + 1 : relpath;
	const char *ko = strstr(base, ".ko");
	return strndup(base, ko ? (size_t)(ko - base) + 3 : strlen(base));
}

static int keep_data(struct kmod_rec *r, const void *data, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, len);
	r->pub.data = copy;
	r->pub.len = len;
	return 0;
}

int img_kmods_add(struct img_kmods *s, const char *relpath, const void *data, size_t len,
		  struct vmci_err *err)
{
	struct img_modinfo mi;
	int rc = img_modinfo_parse(data, len, &mi, err);
	if (rc) {
		vmci_err_wrap(err, "kernel module %s", relpath);
		return rc;
	}
	char *file = ko_name(relpath);
	if (!file)
		return vmci_err_set(err, ENOMEM, "out of memory");
	char *name =
	    mi.name[0] ? name_dup(mi.name, strlen(mi.name)) : name_dup(file, strlen(file) - 3);
	if (!name) {
		free(file);
		return vmci_err_set(err, ENOMEM, "out of memory");
	}

	struct kmod_rec *r = find_rec(s, name);
	if (r) {
		/* Seen again (a second pass): keep the bytes if they are now needed. */
		free(name);
		free(file);
		if (r->pub.data || !is_needed(s, r->pub.name))
			return 0;
		if (keep_data(r, data, len))
			return vmci_err_set(err, ENOMEM, "out of memory");
		return 1;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 256;
		struct kmod_rec *nr = realloc(s->recs, cap * sizeof(*nr));
		if (!nr) {
			free(name);
			free(file);
			return vmci_err_set(err, ENOMEM, "out of memory");
		}
		s->recs = nr;
		s->cap = cap;
	}
	r = &s->recs[s->n++];
	memset(r, 0, sizeof(*r));
	r->pub.name = name;
	r->pub.file = file;
	r->pub.relpath = strdup(relpath);
	if (!r->pub.relpath || add_deps(r, mi.depends, ",") || add_deps(r, mi.softdep, " "))
		return vmci_err_set(err, ENOMEM, "out of memory");
	if (is_needed(s, name)) {
		for (size_t i = 0; i < r->ndeps; i++)
			if (need(s, r->deps[i]))
				return vmci_err_set(err, ENOMEM, "out of memory");
		if (keep_data(r, data, len))
			return vmci_err_set(err, ENOMEM, "out of memory");
		return 1;
	}
	return 0;
}

int img_kmods_builtin(struct img_kmods *s, const char *text, size_t len, struct vmci_err *err)
{
	s->builtin_known = true;
	for (const char *line = text, *end = text + len; line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t n = nl ? (size_t)(nl - line) : (size_t)(end - line);
		/* "kernel/fs/ext4/ext4.ko": the name is the file's, without .ko. */
		const char *base = line;
		for (const char *p = line; p < line + n; p++)
			if (*p == '/')
				base = p + 1;
		size_t blen = (size_t)(line + n - base);
		if (blen > 3 && !memcmp(base + blen - 3, ".ko", 3) &&
		    push_str(&s->builtin, &s->nbuiltin, name_dup(base, blen - 3)))
			return vmci_err_set(err, ENOMEM, "out of memory");
		line += n + 1;
	}
	return 0;
}

const char *img_kmods_unknown(const struct img_kmods *s, size_t i)
{
	if (!s->builtin_known)
		return NULL;
	for (size_t w = 0; w < s->nwanted; w++) {
		const char *name = s->wanted[w];
		bool found = find_rec(s, name) != NULL;
		for (size_t b = 0; !found && b < s->nbuiltin; b++)
			found = !strcmp(s->builtin[b], name);
		if (!found && i-- == 0)
			return name;
	}
	return NULL;
}

/* Places name after its dependencies (post-order); built-in names place nothing. */
static int place(struct img_kmods *s, const char *name, const char *from, struct vmci_err *err)
{
	struct kmod_rec *r = find_rec(s, name);
	if (!r || r->mark == 2)
		return 0;
	if (r->mark == 1)
		return vmci_err_set(err, ELOOP, "kernel modules %s and %s depend on each other",
				    from ? from : name, name);
	r->mark = 1;
	for (size_t i = 0; i < r->ndeps; i++) {
		int rc = place(s, r->deps[i], name, err);
		if (rc)
			return rc;
	}
	r->mark = 2;
	s->order[s->norder++] = r->pub;
	return 0;
}

int img_kmods_order(struct img_kmods *s, struct vmci_err *err)
{
	free(s->order);
	s->norder = 0;
	s->order = calloc(s->n ? s->n : 1, sizeof(*s->order));
	if (!s->order)
		return vmci_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < s->n; i++)
		s->recs[i].mark = 0;
	for (size_t i = 0; i < s->nwanted; i++) {
		int rc = place(s, s->wanted[i], NULL, err);
		if (rc)
			return rc;
	}
	int missing = 0;
	for (size_t i = 0; i < s->norder; i++) {
		/* Anything placed is needed, even if learnt only now. */
		if (need(s, s->order[i].name))
			return vmci_err_set(err, ENOMEM, "out of memory");
		if (!s->order[i].data)
			missing++;
	}
	return missing;
}

size_t img_kmods_count(const struct img_kmods *s)
{
	return s->norder;
}

const struct img_kmod *img_kmods_at(const struct img_kmods *s, size_t i)
{
	return i < s->norder ? &s->order[i] : NULL;
}
