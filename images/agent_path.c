/*
 * Files images need that ship with vmci rather than with the host: the
 * guest agent binaries and the recipe files. Both are found relative to
 * the running executable, so a build tree (build/vmci, build/agent/) and an
 * install (bin/vmci, lib/vmci/, share/vmci/recipes/) both work without
 * configuration; an environment variable overrides either.
 */
#include "images/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How far up from the executable a source tree's images/recipes is looked for. */
#define RECIPE_SEARCH_DEPTH 6

static bool is_plain_name(const char *s)
{
	return s[0] && s[0] != '.' && !strchr(s, '/');
}

/* Copies path into out, resolved to an absolute path when it exists. */
static int found(const char *path, char *out, size_t size, struct vmci_err *err)
{
	char real[PATH_MAX];
	const char *p = realpath(path, real) ? real : path;
	if (fs_path(out, size, "%s", p))
		return vmci_err_set(err, ENAMETOOLONG, "path too long: %s", p);
	return 0;
}

int img_agent_path(const char *arch, char *out, size_t size, struct vmci_err *err)
{
	char file[64], path[PATH_MAX], self[PATH_MAX];
	if (!is_plain_name(arch) || fs_path(file, sizeof(file), "vmci-agent-%s", arch))
		return vmci_err_set(err, EINVAL, "bad architecture name '%s'", arch);

	const char *env = getenv("VMCI_AGENT_DIR");
	if (env && *env) {
		if (fs_path(path, sizeof(path), "%s/%s", env, file) == 0 && access(path, X_OK) == 0)
			return found(path, out, size, err);
		return vmci_err_set(err, ENOENT,
				    "guest agent %s not found in $VMCI_AGENT_DIR (%s) (run: make "
				    "build/agent/%s, or unset VMCI_AGENT_DIR)",
				    file, env, file);
	}

	int rc = fs_self_dir(self, sizeof(self));
	if (rc)
		return vmci_err_errno(err, -rc, "cannot find the vmci executable's directory");
	static const char *const places[] = {"%s/agent/%s", "%s/../lib/vmci/%s"};
	for (size_t i = 0; i < ARRAY_LEN(places); i++) {
		if (fs_path(path, sizeof(path), places[i], self, file) == 0 &&
		    access(path, X_OK) == 0)
			return found(path, out, size, err);
	}
	return vmci_err_set(err, ENOENT,
			    "guest agent %s not found in %s/agent or %s/../lib/vmci (run: make "
			    "build/agent/%s, or set VMCI_AGENT_DIR)",
			    file, self, self, file);
}

int img_recipe_path(const char *name, char *out, size_t size, struct vmci_err *err)
{
	char path[PATH_MAX], dir[PATH_MAX];
	if (!is_plain_name(name))
		return vmci_err_set(err, EINVAL, "bad recipe name '%s'", name);

	const char *env = getenv("VMCI_RECIPES_DIR");
	if (env && *env) {
		if (fs_path(path, sizeof(path), "%s/%s.yml", env, name) == 0 && fs_exists(path))
			return found(path, out, size, err);
		return vmci_err_set(err, ENOENT,
				    "recipe %s.yml not found in $VMCI_RECIPES_DIR (%s) (unset it, "
				    "or point it at images/recipes)",
				    name, env);
	}

	int rc = fs_self_dir(dir, sizeof(dir));
	if (rc)
		return vmci_err_errno(err, -rc, "cannot find the vmci executable's directory");
	char self[PATH_MAX];
	memcpy(self, dir, sizeof(self));
	for (int depth = 0; depth < RECIPE_SEARCH_DEPTH; depth++) {
		if (fs_path(path, sizeof(path), "%s/images/recipes/%s.yml", dir, name) == 0 &&
		    fs_exists(path))
			return found(path, out, size, err);
		char *slash = strrchr(dir, '/');
		if (!slash || slash == dir)
			break;
		*slash = 0;
	}
	if (fs_path(path, sizeof(path), "%s/../share/vmci/recipes/%s.yml", self, name) == 0 &&
	    fs_exists(path))
		return found(path, out, size, err);
	return vmci_err_set(
	    err, ENOENT,
	    "recipe %s.yml not found in images/recipes above %s nor in %s/../share/vmci/recipes "
	    "(set VMCI_RECIPES_DIR to the directory holding it)",
	    name, self, self);
}
