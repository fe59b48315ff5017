/* Finding programs in $PATH, as execvp does. */
#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where programs are looked for when $PATH is unset or empty. */
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

static bool is_program(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

int path_search(const char *name, char *out, size_t size)
{
	if (!*name)
		return -ENOENT;
	if (strchr(name, '/')) {
		if (fs_path(out, size, "%s", name))
			return -ENAMETOOLONG;
		return is_program(out) ? 0 : -ENOENT;
	}
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = DEFAULT_PATH;
	bool too_long = false;
	for (const char *p = path;;) {
		const char *end = strchrnul(p, ':');
		int len = (int)(end - p);
		/* An empty entry is the current directory. */
		if (len ? fs_path(out, size, "%.*s/%s", len, p, name)
			: fs_path(out, size, "./%s", name))
			too_long = true;
		else if (is_program(out))
			return 0;
		if (!*end)
			break;
		p = end + 1;
	}
	return too_long ? -ENAMETOOLONG : -ENOENT;
}
