/*
 * vmci hook install|post-receive: runs for pushes to a bare repository on
 * this machine (the sr.ht / gitolite way). install writes the repo's
 * post-receive hook; the hook reads git's "OLD NEW REF" lines and asks
 * the server for a run of each updated ref.
 */
#include "cli/cli.h"
#include "cli/client.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: vmci hook install --server URL --repo NAME [--token-file FILE] [GIT_DIR]\n"
    "       vmci hook post-receive --server URL --repo NAME [--token-file FILE]\n"
    "\n"
    "install writes GIT_DIR/hooks/post-receive (GIT_DIR: the bare repository, default\n"
    "the current directory), which runs 'vmci hook post-receive' on every push.\n"
    "post-receive reads 'OLD NEW REF' lines on stdin and creates a run of each pushed\n"
    "ref (deleted refs are skipped) through the API, unless the pipeline's 'on:' does\n"
    "not select the ref (the server says why); the token comes from FILE or\n"
    "$VMCI_TOKEN. Exit status: 0 every push answered, 2 refused, 3 server unreachable.";

/* Appends s to b in single quotes, for a shell. */
static void shell_quote(struct buf *b, const char *s)
{
	buf_append(b, "'", 1);
	for (; *s; s++)
		if (*s == '\'')
			buf_append(b, "'\\''", 4);
		else
			buf_append(b, s, 1);
	buf_append(b, "'", 1);
}

static int install(const char *server, const char *repo, const char *token_file,
		   const char *git_dir)
{
	char exe[PATH_MAX], hook[PATH_MAX], tf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0) {
		cli_error("hook: cannot find the vmci binary: %s", strerror(errno));
		return EXIT_FAILED;
	}
	exe[n] = 0;
	if (fs_path(hook, sizeof(hook), "%s/hooks", git_dir) || !fs_exists(hook)) {
		cli_error("hook: %s is not a git repository (no hooks/ directory): give the bare "
			  "repository's path",
			  git_dir);
		return EXIT_USAGE;
	}
	if (token_file && !realpath(token_file, tf)) {
		cli_error("hook: token file %s: %s", token_file, strerror(errno));
		return EXIT_USAGE;
	}
	struct buf b = {0};
	buf_appendf(&b,
		    "#!/bin/sh\n# Written by 'vmci hook install': a run for every push.\nexec ");
	shell_quote(&b, exe);
	buf_appendf(&b, " hook post-receive --server ");
	shell_quote(&b, server);
	buf_appendf(&b, " --repo ");
	shell_quote(&b, repo);
	if (token_file) {
		buf_appendf(&b, " --token-file ");
		shell_quote(&b, tf);
	}
	buf_appendf(&b, "\n");
	fs_path(hook, sizeof(hook), "%s/hooks/post-receive", git_dir);
	struct vmci_err err = {0};
	int rc = fs_write_atomic(hook, b.data, b.len, 0755, &err);
	buf_free(&b);
	if (rc) {
		cli_error("hook: %s", err.msg);
		return EXIT_FAILED;
	}
	fprintf(stderr, "vmci: installed %s (runs of '%s' on %s)\n", hook, repo, server);
	return EXIT_OK;
}

static bool zero_sha(const char *sha)
{
	return strspn(sha, "0") == strlen(sha);
}

static int post_receive(const char *server, const char *repo, const char *token_file)
{
	struct client c;
	int rc = client_init(&c, server, token_file);
	if (rc)
		return rc;
	char line[1024];
	int worst = EXIT_OK;
	while (fgets(line, sizeof(line), stdin)) {
		char old[128], new[128], ref[800];
		if (sscanf(line, "%127s %127s %799s", old, new, ref) != 3)
			continue;
		if (zero_sha(new))
			continue; /* a deleted ref: nothing to build */
		json_t *run = NULL;
		rc = client_json(&c, "hook", "POST", "/api/v1/runs",
				 json_pack("{s:s, s:s, s:s, s:s}", "repo", repo, "ref", ref, "sha",
					   new, "trigger", "push"),
				 &run);
		const char *reason = json_string_value(json_object_get(run, "reason"));
		if (rc == 0 && reason)
			fprintf(stderr, "vmci: no run for %s (%.12s): %s\n", ref, new, reason);
		else if (rc == 0)
			fprintf(stderr, "vmci: run %lld for %s (%.12s): %s/api/v1/runs/%lld\n",
				(long long)json_integer_value(json_object_get(run, "id")), ref, new,
				c.server,
				(long long)json_integer_value(json_object_get(run, "id")));
		json_decref(run);
		if (rc > worst)
			worst = rc;
	}
	return worst;
}

int cmd_hook(int argc, char **argv)
{
	const char *server = NULL, *repo = NULL, *token_file = NULL;
	const struct cli_option opts[] = {
	    {0, "server", OPT_STRING, &server, "URL", "the vmci server"},
	    {0, "repo", OPT_STRING, &repo, "NAME", "the repo's name in the server's config"},
	    {0, "token-file", OPT_STRING, &token_file, "FILE", "the API token (else $VMCI_TOKEN)"},
	    {0},
	};
	int first = cli_parse(argc, argv, opts, usage, false);
	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;
	const char *what = first < argc ? argv[first] : "";
	if (!repo) {
		cli_error("hook: --repo NAME is required");
		return EXIT_USAGE;
	}
	if (!strcmp(what, "install")) {
		if (!server) {
			cli_error("hook install: --server URL is required");
			return EXIT_USAGE;
		}
		if (argc - first > 2) {
			cli_error("hook install: one GIT_DIR at most");
			return EXIT_USAGE;
		}
		return install(server, repo, token_file, argc - first == 2 ? argv[first + 1] : ".");
	}
	if (!strcmp(what, "post-receive") && argc - first == 1)
		return post_receive(server, repo, token_file);
	cli_error("hook: want 'install' or 'post-receive'");
	return EXIT_USAGE;
}
