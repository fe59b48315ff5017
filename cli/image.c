/* vmci image: golden images. */
#include "cli/cli.h"

#include "images/images.h"

#include <string.h>

static const char image_usage[] =
	"Usage: vmci image build NAME\n"
	"\n"
	"Builds the golden image NAME into the image store ($VMCI_HOME/images), or\n"
	"says it is already there. Known images:";

static void print_usage(FILE *out)
{
	fprintf(out, "%s", image_usage);
	for (const char *const *n = img_known_names(); *n; n++)
		fprintf(out, " %s", *n);
	fprintf(out, "\n");
}

static int image_build(int argc, char **argv)
{
	const struct cli_option opts[] = {{0}};
	int first = cli_parse(argc, argv, opts, image_usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;
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
		int rc = img_ensure(argv[i], &img, cli_progress, &progress, &err);
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

int cmd_image(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		print_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	if (!strcmp(argv[1], "build"))
		return image_build(argc - 1, argv + 1);
	cli_error("image: unknown subcommand '%s' (known: build)", argv[1]);
	return EXIT_USAGE;
}
