/*
 * What an image's /etc/os-release says, recorded in its manifest ("os")
 * when the image is built, so `vmci image ls` shows the system an image
 * really holds, whatever its name.
 *
 * The tree may come from an untrusted archive (an import): a symlink that
 * leads out of it (etc/os-release -> /etc/os-release) is not followed, so
 * nothing of the host's ends up in a manifest.
 */
#include "images/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OS_RELEASE_MAX (64u << 10)

int img_os_release_from_tree(const char *root, struct buf *out)
{
	static const char *const files[] = {"etc/os-release", "usr/lib/os-release"};
	char real_root[PATH_MAX];
	if (!realpath(root, real_root))
		return -errno;
	size_t n = strlen(real_root);
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		char path[PATH_MAX], real[PATH_MAX];
		if (fs_path(path, sizeof(path), "%s/%s", real_root, files[i]) ||
		    !realpath(path, real) || strncmp(real, real_root, n) || real[n] != '/')
			continue;
		out->len = 0;
		if (fs_read_file(real, OS_RELEASE_MAX, out, NULL) == 0)
			return 0;
	}
	return -ENOENT;
}

/* KEY=value or KEY="value" of an os-release text, or NULL. */
static json_t *os_field(const char *text, const char *key)
{
	size_t n = strlen(key);
	for (const char *line = text; line && *line;) {
		if (!strncmp(line, key, n) && line[n] == '=') {
			const char *v = line + n + 1;
			size_t len = strcspn(v, "\n");
			if (len >= 2 && (v[0] == '"' || v[0] == '\'') && v[len - 1] == v[0]) {
				v++;
				len -= 2;
			}
			return json_stringn(v, len);
		}
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	return NULL;
}

void img_manifest_set_os(json_t *manifest, const char *text)
{
	static const char *const keys[] = {"ID", "VERSION_ID", "VERSION_CODENAME", "PRETTY_NAME"};
	static const char *const names[] = {"id", "version_id", "codename", "pretty_name"};
	json_t *os = json_object();
	for (size_t i = 0; os && i < ARRAY_LEN(keys); i++) {
		json_t *v = os_field(text, keys[i]);
		if (v)
			json_object_set_new(os, names[i], v);
	}
	if (os)
		json_object_set_new(manifest, "os", os);
}
