/* The option parser every subcommand shares. */
#include "cli/cli.h"

#include "common/common.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_error(const char *fmt, ...)
{
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (vmci_use_color(STDERR_FILENO))
		fprintf(stderr, "vmci: \033[1;31merror:\033[0m %s\n", msg);
	else
		fprintf(stderr, "vmci: error: %s\n", msg);
}

void cli_usage(FILE *out, const char *usage, const struct cli_option *opts)
{
	fprintf(out, "%s\n", usage);
	if (!opts || !opts[0].long_name)
		return;
	fprintf(out, "\nOptions:\n");
	for (const struct cli_option *o = opts; o->long_name; o++) {
		char left[64];
		char sh[8] = "    ";
		if (o->short_name)
			snprintf(sh, sizeof(sh), "-%c, ", o->short_name);
		snprintf(left, sizeof(left), "%s--%s%s%s", sh, o->long_name, o->arg_name ? " " : "",
			 o->arg_name ? o->arg_name : "");
		fprintf(out, "  %-28s %s\n", left, o->help);
	}
	fprintf(out, "  %-28s %s\n", "-h, --help", "show this help");
}

static const struct cli_option *find_long(const struct cli_option *opts, const char *name,
					  size_t len)
{
	for (const struct cli_option *o = opts; o && o->long_name; o++)
		if (strlen(o->long_name) == len && !strncmp(o->long_name, name, len))
			return o;
	return NULL;
}

static const struct cli_option *find_short(const struct cli_option *opts, char c)
{
	for (const struct cli_option *o = opts; o && o->long_name; o++)
		if (o->short_name == c)
			return o;
	return NULL;
}

static int set_value(const struct cli_option *o, const char *arg, const char *cmd)
{
	char *end;
	switch (o->type) {
	case OPT_FLAG:
		*(bool *)o->value = true;
		return 0;
	case OPT_STRING:
		*(const char **)o->value = arg;
		return 0;
	case OPT_INT: {
		errno = 0;
		long v = strtol(arg, &end, 10);
		if (*arg == 0 || *end || errno || v < INT_MIN || v > INT_MAX) {
			cli_error("%s: --%s wants a whole number, not '%s'", cmd, o->long_name,
				  arg);
			return -1;
		}
		*(int *)o->value = (int)v;
		return 0;
	}
	case OPT_DURATION: {
		int64_t ms;
		if (parse_duration(arg, DURATION_BARE_SECONDS, &ms) || ms > INT_MAX) {
			cli_error("%s: --%s wants a duration such as 90s, 20m or 1h30m (units h, "
				  "m, s, ms, largest first) or a number of seconds, not '%s'",
				  cmd, o->long_name, arg);
			return -1;
		}
		*(int *)o->value = (int)ms;
		return 0;
	}
	}
	return -1;
}

int cli_parse(int argc, char **argv, const struct cli_option *opts, const char *usage,
	      bool stop_at_operand)
{
	const char *cmd = argv[0];
	/*
	 * Operands met between options are collected and moved behind them,
	 * like getopt's permutation, unless stop_at_operand asks to keep
	 * everything after the first operand for a command run in the guest.
	 */
	char **operands = calloc((size_t)argc + 1, sizeof(char *));
	int n_operands = 0;
	int i = 1;
	int rc = -1;
	if (!operands)
		return -1;
	while (i < argc) {
		char *a = argv[i];
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			cli_usage(stdout, usage, opts);
			rc = -2;
			goto out;
		}
		if (a[0] != '-' || a[1] == 0) {
			if (stop_at_operand)
				break;
			operands[n_operands++] = a;
			i++;
			continue;
		}
		const struct cli_option *o;
		const char *arg = NULL;
		if (a[1] == '-') {
			const char *name = a + 2;
			const char *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			o = find_long(opts, name, len);
			if (!o) {
				cli_error("%s: unknown option '--%.*s' (see: vmci %s --help)", cmd,
					  (int)len, name, cmd);
				goto out;
			}
			if (eq) {
				if (o->type == OPT_FLAG) {
					cli_error("%s: --%s takes no value", cmd, o->long_name);
					goto out;
				}
				arg = eq + 1;
			}
		} else {
			o = find_short(opts, a[1]);
			if (!o) {
				cli_error("%s: unknown option '-%c' (see: vmci %s --help)", cmd,
					  a[1], cmd);
				goto out;
			}
			if (a[2]) {
				if (o->type == OPT_FLAG) {
					cli_error("%s: -%c takes no value", cmd, a[1]);
					goto out;
				}
				arg = a + 2;
			}
		}
		if (o->type != OPT_FLAG && !arg) {
			if (i + 1 >= argc) {
				cli_error("%s: --%s needs a value (%s)", cmd, o->long_name,
					  o->arg_name ? o->arg_name : "VALUE");
				goto out;
			}
			arg = argv[++i];
		}
		if (set_value(o, arg, cmd))
			goto out;
		i++;
	}
	/* argv[i..] are operands too; put the collected ones in front of them. */
	rc = i - n_operands;
	memmove(argv + rc + n_operands, argv + i, sizeof(char *) * (size_t)(argc - i));
	memcpy(argv + rc, operands, sizeof(char *) * (size_t)n_operands);
out:
	free(operands);
	return rc;
}

bool cli_parse_operand(int argc, char **argv, const struct cli_option *opts, const char *usage,
		       const char *what, const char **operand, int *status)
{
	int first = cli_parse(argc, argv, opts, usage, false);
	*operand = NULL;
	*status = first == -2 ? EXIT_OK : EXIT_USAGE;
	if (first == -2 || first < 0)
		return false;
	if (argc - first != 1) {
		cli_error("%s: want one %s", argv[0], what);
		return false;
	}
	*operand = argv[first];
	return true;
}
