/* vmci image: build, list, inspect, import, pull and remove golden images. */
#include "cli/cli.h"

#include "images/images.h"
#include "runner/runner.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char image_usage[] =
    "Usage: vmci image COMMAND [ARGS]\n"
    "\n"
    "Golden images, in the store under $VMCI_HOME/images:\n"
    "  build NAME...                      build images from their recipes (or say they are\n"
    "                                     up to date)\n"
    "  ls [--json]                        list images: size on disk, shared, age, clones\n"
    "  inspect NAME                       everything about an image, as JSON\n"
    "  import NAME PATH                   make a root filesystem archive or a qcow2/raw disk\n"
    "                                     an image\n"
    "  pull URL --sha256 HEX --name NAME  download a disk or archive (resumable, verified)\n"
    "  rm NAME...                         remove names; `gc` then frees their images\n"
    "  gc [--dry-run]                     remove what no name and no running VM uses\n"
    "\n"
    "Images with a recipe:";

char *cli_usage_with_recipes(const char *usage)
{
	struct buf b = {0};
	char **names = NULL;
	struct vmci_err err = {0};
	buf_appendf(&b, "%s", usage);
	if (img_recipe_names(&names, &err))
		buf_appendf(&b, " (%s)", err.msg);
	for (size_t i = 0; names && names[i]; i++)
		buf_appendf(&b, "%s %s", i ? "," : "", names[i]);
	img_names_free(names);
	if (buf_reserve(&b, 1)) {
		buf_free(&b);
		return NULL;
	}
	b.data[b.len] = 0;
	return (char *)b.data;
}

static void print_usage(FILE *out)
{
	char *usage = cli_usage_with_recipes(image_usage);
	fprintf(out, "%s\n", usage ? usage : image_usage);
	free(usage);
}

/* Parses argv against opts; returns the first operand's index, or -(exit code + 1). */
static int parse(int argc, char **argv, const struct cli_option *opts, const char *usage)
{
	int first = cli_parse(argc, argv, opts, usage, false);
	if (first == -2)
		return -(EXIT_OK + 1);
	if (first < 0)
		return -(EXIT_USAGE + 1);
	return first;
}

static void human_size(long long bytes, char *out, size_t size)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1024 && u + 1 < ARRAY_LEN(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, size, "%lld B", bytes);
	else
		snprintf(out, size, "%.*f %s", v < 10 ? 1 : 0, v, units[u]);
}

static void human_age(long long created, char *out, size_t size)
{
	long long s = created > 0 ? (long long)time(NULL) - created : -1;
	if (s < 0)
		snprintf(out, size, "-");
	else if (s < 120)
		snprintf(out, size, "%llds", s);
	else if (s < 7200)
		snprintf(out, size, "%lldm", s / 60);
	else if (s < 3 * 86400)
		snprintf(out, size, "%lldh", s / 3600);
	else
		snprintf(out, size, "%lldd", s / 86400);
}

static int image_build(int argc, char **argv)
{
	const struct cli_option opts[] = {{0}};
	int first = parse(argc, argv, opts, "Usage: vmci image build NAME...");
	if (first < 0)
		return -first - 1;
	if (first >= argc) {
		cli_error("image build: which image?");
		print_usage(stderr);
		return EXIT_USAGE;
	}
	int status = EXIT_OK;
	for (int i = first; i < argc; i++) {
		char label[128];
		snprintf(label, sizeof(label), "building %s", argv[i]);
		struct cli_progress progress = {.label = label};
		struct img_boot img;
		struct vmci_err err = {0};
		int64_t t0 = clock_ms();
		/* Recipes with setup commands run them in a VM the runner boots. */
		struct img_ensure_opts o = {.progress = cli_progress,
					    .progress_ctx = &progress,
					    .setup = runner_image_setup};
		int rc = img_ensure_with(argv[i], &o, &img, &err);
		cli_progress_end(&progress);
		if (rc) {
			cli_error("%s", err.msg);
			status = EXIT_INFRA;
			continue;
		}
		char took[32];
		format_duration(clock_ms() - t0, took, sizeof(took));
		printf("%s  %s  sha256:%.12s  (%s)\n", img.name, img.arch, img.digest, took);
	}
	return status;
}

static const char *or_null(const char *s)
{
	return s[0] ? s : NULL;
}

static json_t *info_json(const struct img_info *r)
{
	json_t *o =
	    json_pack("{s:s?, s:s, s:{s:s?, s:s?, s:s?}, s:s?, s:s+, s:I, s:I, s:i, s:I, s:I}",
		      "name", or_null(r->name), "arch", r->arch, "os", "pretty_name",
		      or_null(r->os), "id", or_null(r->os_id), "version_id", or_null(r->os_version),
		      "kernel", or_null(r->kernel), "digest", "sha256:", r->digest, "size",
		      (json_int_t)r->size, "shared", (json_int_t)r->shared, "clones", r->clones,
		      "clones_size", (json_int_t)r->clones_size, "created", (json_int_t)r->created);
	if (o && r->parent[0])
		json_object_set_new(o, "parent",
				    json_pack("{s:s+, s:s}", "digest", "sha256:", r->parent, "name",
					      r->parent_name));
	return o;
}

static void print_table(const struct img_info *rows, size_t n)
{
	enum { COLS = 10 };
	static const char *const head[COLS] = {"NAME", "ARCH",	 "OS",	"KERNEL", "DIGEST",
					       "SIZE", "SHARED", "AGE", "CLONES", "PARENT"};
	char(*cells)[COLS][100] = calloc(n ? n : 1, sizeof(*cells));
	if (!cells)
		return;
	int width[COLS];
	for (int c = 0; c < COLS; c++)
		width[c] = (int)strlen(head[c]);
	for (size_t i = 0; i < n; i++) {
		snprintf(cells[i][0], 100, "%s", rows[i].name[0] ? rows[i].name : "<none>");
		snprintf(cells[i][1], 100, "%s", rows[i].arch[0] ? rows[i].arch : "-");
		snprintf(cells[i][2], 100, "%s", rows[i].os[0] ? rows[i].os : "-");
		snprintf(cells[i][3], 100, "%s", rows[i].kernel[0] ? rows[i].kernel : "-");
		snprintf(cells[i][4], 100, "sha256:%.12s", rows[i].digest);
		human_size(rows[i].size, cells[i][5], 100);
		human_size(rows[i].shared, cells[i][6], 100);
		human_age(rows[i].created, cells[i][7], 100);
		snprintf(cells[i][8], 100, "%d", rows[i].clones);
		if (rows[i].parent[0])
			snprintf(cells[i][9], 100, "%s@sha256:%.12s",
				 rows[i].parent_name[0] ? rows[i].parent_name : "", rows[i].parent);
		else
			snprintf(cells[i][9], 100, "-");
		for (int c = 0; c < COLS; c++)
			if ((int)strlen(cells[i][c]) > width[c])
				width[c] = (int)strlen(cells[i][c]);
	}
	bool color = vmci_use_color(STDOUT_FILENO);
	/* Sizes and counts are right-aligned, so their digits line up. */
	static const bool right[COLS] = {false, false, false, false, false,
					 true,	true,  true,  true,  false};
	printf("%s", color ? "\033[1m" : "");
	for (int c = 0; c < COLS; c++)
		printf("%s%*s", c ? "  " : "",
		       right[c]	       ? width[c]
		       : c == COLS - 1 ? 0
				       : -width[c],
		       head[c]);
	printf("%s\n", color ? "\033[0m" : "");
	for (size_t i = 0; i < n; i++) {
		bool unnamed = !rows[i].name[0];
		printf("%s", color && unnamed ? "\033[2m" : "");
		/* The last column is not padded: no trailing blanks. */
		for (int c = 0; c < COLS; c++)
			printf("%s%*s", c ? "  " : "",
			       right[c]	       ? width[c]
			       : c == COLS - 1 ? 0
					       : -width[c],
			       cells[i][c]);
		printf("%s\n", color && unnamed ? "\033[0m" : "");
	}
	free(cells);
}

static int image_ls(int argc, char **argv)
{
	bool as_json = false;
	const struct cli_option opts[] = {
	    {0, "json", OPT_FLAG, &as_json, NULL, "print a JSON array (sizes in bytes)"}, {0}};
	int first = parse(argc, argv, opts,
			  "Usage: vmci image ls [--json]\n\n"
			  "Lists the images in the store. OS is the PRETTY_NAME of the image's\n"
			  "/etc/os-release and KERNEL the release of its kernel, both read from\n"
			  "the image when it was built. SIZE is what an image takes on disk;\n"
			  "SHARED, how much of it other names, images built on it, or running\n"
			  "clones also use; CLONES, the clones (VM disks) using it now. <none>\n"
			  "is an image no name points at: `vmci image gc` removes it once no\n"
			  "clone uses it.");
	if (first < 0)
		return -first - 1;
	if (first < argc) {
		cli_error("image ls: unexpected argument '%s'", argv[first]);
		return EXIT_USAGE;
	}
	struct img_info *rows = NULL;
	size_t n = 0;
	struct vmci_err err = {0};
	if (img_list(&rows, &n, &err)) {
		cli_error("%s", err.msg);
		return EXIT_INFRA;
	}
	if (as_json) {
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, info_json(&rows[i]));
		json_dumpf(a, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(a);
	} else if (n == 0) {
		printf("no images in %s (build one: vmci image build busybox-x86_64)\n",
		       img_store_root());
	} else {
		print_table(rows, n);
	}
	free(rows);
	return EXIT_OK;
}

/* Parses a lone NAME operand: returns -1 with *name set, or the exit code to return. */
static int one_name(int argc, char **argv, const char *usage, const char **name)
{
	const struct cli_option opts[] = {{0}};
	int first = parse(argc, argv, opts, usage);
	if (first < 0)
		return -first - 1;
	if (argc - first != 1) {
		cli_error("%s: expected one image name", argv[0]);
		cli_usage(stderr, usage, NULL);
		return EXIT_USAGE;
	}
	*name = argv[first];
	return -1;
}

static json_t *names_json(char *const *names)
{
	json_t *a = json_array();
	for (size_t i = 0; names && names[i]; i++)
		json_array_append_new(a, json_string(names[i]));
	return a;
}

static json_t *file_json(const struct img_file_info *f)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "name", f->name, "path", f->path, "size",
			      (json_int_t)f->size, "disk_usage", (json_int_t)f->disk_usage);
	if (o && f->disk) {
		json_object_set_new(o, "format", json_string(f->format));
		json_object_set_new(o, "virtual_size", json_integer(f->virtual_size));
		if (f->backing[0])
			json_object_set_new(o, "backing", json_string(f->backing));
	}
	return o;
}

/*
 * The document `vmci image inspect` prints: the image's facts, its
 * manifest as stored, its files, parents and live clones.
 */
static json_t *details_json(const struct img_details *d)
{
	json_t *manifest = json_loads(d->manifest.text, 0, NULL);
	json_t *j =
	    json_pack("{s:s, s:s+, s:s, s:I, s:o, s:o}", "name", d->name, "digest",
		      "sha256:", d->digest, "path", d->dir, "size", (json_int_t)d->size, "names",
		      names_json(d->names), "manifest", manifest ? manifest : json_null());
	if (!j)
		return NULL;
	if (d->recipe_file[0])
		json_object_set_new(j, "recipe_file", json_string(d->recipe_file));
	json_t *files = json_array(), *parents = json_array(), *clones = json_array();
	for (size_t i = 0; i < d->n_files; i++)
		json_array_append_new(files, file_json(&d->files[i]));
	for (size_t i = 0; i < d->n_parents; i++)
		json_array_append_new(parents, json_pack("{s:s+, s:s, s:o}", "digest",
							 "sha256:", d->parents[i].digest, "path",
							 d->parents[i].dir, "names",
							 names_json(d->parents[i].names)));
	for (size_t i = 0; i < d->n_clones; i++)
		json_array_append_new(clones,
				      json_pack("{s:s, s:i, s:I}", "overlay", d->clones[i].overlay,
						"pid", d->clones[i].pid, "disk_usage",
						(json_int_t)d->clones[i].disk_usage));
	json_object_set_new(j, "files", files);
	json_object_set_new(j, "parents", parents);
	json_object_set_new(j, "clones", clones);
	return j;
}

static int image_inspect(int argc, char **argv)
{
	const char *name;
	int status = one_name(argc, argv,
			      "Usage: vmci image inspect NAME\n\n"
			      "Prints an image's manifest, files, parents and clones as JSON.",
			      &name);
	if (status >= 0)
		return status;
	struct img_details *d = NULL;
	struct vmci_err err = {0};
	if (img_inspect(name, &d, &err)) {
		cli_error("%s", err.msg);
		return EXIT_INFRA;
	}
	json_t *j = details_json(d);
	img_details_free(d);
	if (!j) {
		cli_error("image inspect: out of memory");
		return EXIT_INFRA;
	}
	json_dumpf(j, stdout, JSON_INDENT(2));
	printf("\n");
	json_decref(j);
	return EXIT_OK;
}

/* What a new image is, once it is published. */
static void print_published(const char *name, int64_t t0)
{
	struct img_boot img;
	char took[32];
	format_duration(clock_ms() - t0, took, sizeof(took));
	if (img_find(name, &img, NULL) == 0)
		printf("%s  %s  sha256:%.12s  (%s)\n", img.name, img.arch, img.digest, took);
}

static int image_import(int argc, char **argv)
{
	static const char usage[] =
	    "Usage: vmci image import NAME PATH\n\n"
	    "Makes PATH the image NAME: a root filesystem archive (tar, tar.gz, tar.xz,\n"
	    "tar.zst, zip) becomes an ext4 root disk; a qcow2 or raw disk is kept as it is.\n"
	    "Either boots with vmci's kernel and agent.";
	const struct cli_option opts[] = {{0}};
	int first = parse(argc, argv, opts, usage);
	if (first < 0)
		return -first - 1;
	if (argc - first != 2) {
		cli_error("image import: expected NAME and PATH");
		cli_usage(stderr, usage, NULL);
		return EXIT_USAGE;
	}
	const char *name = argv[first], *path = argv[first + 1];
	char label[128];
	snprintf(label, sizeof(label), "importing %s", name);
	struct cli_progress progress = {.label = label};
	struct vmci_err err = {0};
	int64_t t0 = clock_ms();
	int rc = img_import(name, path, cli_progress, &progress, &err);
	cli_progress_end(&progress);
	if (rc) {
		cli_error("%s", err.msg);
		return EXIT_INFRA;
	}
	print_published(name, t0);
	return EXIT_OK;
}

static int image_pull(int argc, char **argv)
{
	static const char usage[] =
	    "Usage: vmci image pull URL --sha256 HEX --name NAME [--max-size SIZE]\n\n"
	    "Downloads a qcow2 or raw disk (or a root filesystem archive) and makes it\n"
	    "the image NAME, as `vmci image import` does. An interrupted pull resumes\n"
	    "where it stopped when run again; nothing is published unless the file's\n"
	    "sha256 is HEX. A file larger than SIZE (default 16G) is refused.";
	const char *sha = NULL, *name = NULL, *max_size = NULL;
	const struct cli_option opts[] = {
	    {0, "sha256", OPT_STRING, &sha, "HEX", "the file's sha256, as sha256sum prints it"},
	    {0, "name", OPT_STRING, &name, "NAME", "the image's name"},
	    {0, "max-size", OPT_STRING, &max_size, "SIZE",
	     "the most the file may have: 512M, 20G, ... (default 16G)"},
	    {0}};
	int first = parse(argc, argv, opts, usage);
	if (first < 0)
		return -first - 1;
	if (argc - first != 1 || !sha || !name) {
		cli_error("image pull: expected a URL, --sha256 HEX and --name NAME");
		cli_usage(stderr, usage, opts);
		return EXIT_USAGE;
	}
	int64_t max_bytes = 0;
	if (max_size && (parse_size(max_size, 0, &max_bytes) || max_bytes <= 0)) {
		cli_error("image pull: bad --max-size '%s' (give a size: 512M, 20G, 1T)", max_size);
		return EXIT_USAGE;
	}
	char label[128];
	snprintf(label, sizeof(label), "pulling %s", name);
	struct cli_progress progress = {.label = label};
	struct vmci_err err = {0};
	int64_t t0 = clock_ms();
	int rc = img_pull(argv[first], sha, name, max_bytes, cli_progress, &progress, &err);
	cli_progress_end(&progress);
	if (rc) {
		cli_error("%s", err.msg);
		return rc == -EINVAL ? EXIT_USAGE : EXIT_INFRA;
	}
	print_published(name, t0);
	return EXIT_OK;
}

static int image_rm(int argc, char **argv)
{
	const struct cli_option opts[] = {{0}};
	int first = parse(argc, argv, opts,
			  "Usage: vmci image rm NAME...\n\n"
			  "Removes names from the store. An image stays on disk while a clone\n"
			  "uses it; `vmci image gc` removes the images nothing references.");
	if (first < 0)
		return -first - 1;
	if (first >= argc) {
		cli_error("image rm: which image?");
		return EXIT_USAGE;
	}
	int status = EXIT_OK;
	for (int i = first; i < argc; i++) {
		char digest[SHA256_HEX_LEN + 1];
		struct vmci_err err = {0};
		if (img_remove(argv[i], digest, &err)) {
			cli_error("%s", err.msg);
			status = EXIT_INFRA;
			continue;
		}
		printf("removed %s (sha256:%.12s)\n", argv[i], digest);
	}
	if (status == EXIT_OK)
		printf("run `vmci image gc` to free the disk space of images nothing uses\n");
	return status;
}

static const char *const gc_kinds[] = {
    [IMG_GC_IMAGE] = "image",
    [IMG_GC_CLONE] = "stale clone",
    [IMG_GC_REGISTRATION] = "clone record",
    [IMG_GC_SCRATCH] = "scratch directory",
    [IMG_GC_DOWNLOAD] = "partial download",
};

static void print_gc_item(void *ctx, enum img_gc_kind kind, const char *what, long long bytes)
{
	bool dry_run = *(bool *)ctx;
	char size[32];
	human_size(bytes, size, sizeof(size));
	printf("%s %s %s: %s\n", dry_run ? "would remove" : "removed", gc_kinds[kind], what, size);
}

static int image_gc(int argc, char **argv)
{
	bool dry_run = false;
	const struct cli_option opts[] = {
	    {'n', "dry-run", OPT_FLAG, &dry_run, NULL, "only say what would be removed"}, {0}};
	int first = parse(argc, argv, opts,
			  "Usage: vmci image gc [--dry-run]\n\n"
			  "Removes the images that no name, no image built on them and no live\n"
			  "clone uses; clones left by processes that died; the leftovers of\n"
			  "interrupted builds, imports, pulls and downloads.");
	if (first < 0)
		return -first - 1;
	if (first < argc) {
		cli_error("image gc: unexpected argument '%s'", argv[first]);
		return EXIT_USAGE;
	}
	struct img_gc_opts o = {.dry_run = dry_run, .on_item = print_gc_item, .ctx = &dry_run};
	struct img_gc_report r;
	struct vmci_err err = {0};
	if (img_gc(&o, &r, &err)) {
		cli_error("%s", err.msg);
		return EXIT_INFRA;
	}
	int items = 0;
	for (size_t k = 0; k < ARRAY_LEN(r.removed); k++)
		items += r.removed[k];
	char size[32];
	human_size(r.bytes, size, sizeof(size));
	int images = r.removed[IMG_GC_IMAGE], others = items - images;
	char other[64] = "";
	if (others)
		snprintf(other, sizeof(other), " and %d other item%s", others,
			 others == 1 ? "" : "s");
	if (!items)
		printf("nothing to remove\n");
	else
		printf("%s %d image%s%s, %s\n", dry_run ? "would remove" : "removed", images,
		       images == 1 ? "" : "s", other, size);
	if (r.busy)
		printf("kept %d unreferenced image%s that a running build is publishing\n", r.busy,
		       r.busy == 1 ? "" : "s");
	return EXIT_OK;
}

int cmd_image(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(int argc, char **argv);
	} subs[] = {
	    {"build", image_build},   {"ls", image_ls},	    {"inspect", image_inspect},
	    {"import", image_import}, {"pull", image_pull}, {"rm", image_rm},
	    {"gc", image_gc},
	};
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		print_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	for (size_t i = 0; i < ARRAY_LEN(subs); i++)
		if (!strcmp(argv[1], subs[i].name))
			return subs[i].run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "list"))
		return image_ls(argc - 1, argv + 1);
	cli_error(
	    "image: unknown subcommand '%s' (known: build, ls, inspect, import, pull, rm, gc)",
	    argv[1]);
	return EXIT_USAGE;
}
