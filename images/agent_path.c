/*
 * Files images need that ship with vmci rather than with the host: the
 * guest agent binaries and the recipe files. Both are found relative to
 * the running executable, so a build tree (build/vmci, build/agent/) and an
 * install (bin/vmci, lib/vmci/, share/vmci/recipes/) both work without
 * configuration; an environment variable overrides either. The images
 * a recipe builds are the recipe files there: nothing lists them by hand.
 */
#include "images/internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How far up from the executable a source tree's images/recipes is looked for. */
#define RECIPE_SEARCH_DEPTH 6
/* Image names are at most this long, with their NUL (struct img_boot). */
#define RECIPE_NAME_MAX 64

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

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int img_recipes_dir(char *out, size_t size, struct vmci_err *err)
{
	char path[PATH_MAX], dir[PATH_MAX];
	const char *env = getenv("VMCI_RECIPES_DIR");
	if (env && *env) {
		if (is_dir(env))
			return found(env, out, size, err);
		return vmci_err_set(err, ENOENT,
				    "$VMCI_RECIPES_DIR (%s) is not a directory (unset it, or point "
				    "it at images/recipes)",
				    env);
	}

	int rc = fs_self_dir(dir, sizeof(dir));
	if (rc)
		return vmci_err_errno(err, -rc, "cannot find the vmci executable's directory");
	char self[PATH_MAX];
	memcpy(self, dir, sizeof(self));
	for (int depth = 0; depth < RECIPE_SEARCH_DEPTH; depth++) {
		if (fs_path(path, sizeof(path), "%s/images/recipes", dir) == 0 && is_dir(path))
			return found(path, out, size, err);
		char *slash = strrchr(dir, '/');
		if (!slash || slash == dir)
			break;
		*slash = 0;
	}
	if (fs_path(path, sizeof(path), "%s/../share/vmci/recipes", self) == 0 && is_dir(path))
		return found(path, out, size, err);
	return vmci_err_set(
	    err, ENOENT,
	    "no recipes: neither images/recipes above %s nor %s/../share/vmci/recipes "
	    "exists (set VMCI_RECIPES_DIR to the directory holding them)",
	    self, self);
}

int img_recipe_path(const char *name, char *out, size_t size, struct vmci_err *err)
{
	char dir[PATH_MAX], path[PATH_MAX];
	if (!is_plain_name(name))
		return vmci_err_set(err, EINVAL, "bad recipe name '%s'", name);
	int rc = img_recipes_dir(dir, sizeof(dir), err);
	if (rc)
		return rc;
	if (fs_path(path, sizeof(path), "%s/%s.yml", dir, name) == 0 && fs_exists(path))
		return found(path, out, size, err);
	const char *env = getenv("VMCI_RECIPES_DIR");
	return vmci_err_set(err, ENOENT, "recipe %s.yml not found in %s (%s)", name, dir,
			    env && *env ? "unset VMCI_RECIPES_DIR, or point it at images/recipes"
					: "set VMCI_RECIPES_DIR to the directory holding it");
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int img_recipe_names(char ***out, struct vmci_err *err)
{
	char dir[PATH_MAX];
	*out = NULL;
	int rc = img_recipes_dir(dir, sizeof(dir), err);
	if (rc)
		return rc;
	size_t n = 0, cap = 8;
	char **names = calloc(cap, sizeof(*names));
	if (!names)
		return vmci_err_set(err, ENOMEM, "out of memory listing the recipes in %s", dir);
	DIR *d = opendir(dir);
	if (!d) {
		int e = errno;
		free(names);
		return vmci_err_errno(err, e, "cannot read the recipes in %s", dir);
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len <= 4 || len - 4 >= RECIPE_NAME_MAX || strcmp(e->d_name + len - 4, ".yml"))
			continue;
		if (n + 2 > cap) {
			char **grown = realloc(names, 2 * cap * sizeof(*names));
			if (!grown)
				break;
			names = grown;
			cap *= 2;
		}
		char *name = strndup(e->d_name, len - 4);
		if (!name)
			break;
		if (!is_plain_name(name)) {
			free(name);
			continue;
		}
		names[n++] = name;
		names[n] = NULL;
	}
	bool failed = e != NULL; /* the loop stopped early: out of memory */
	closedir(d);
	if (failed) {
		img_names_free(names);
		return vmci_err_set(err, ENOMEM, "out of memory listing the recipes in %s", dir);
	}
	qsort(names, n, sizeof(*names), compare_names);
	*out = names;
	return 0;
}

void img_names_free(char **names)
{
	for (size_t i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
}
