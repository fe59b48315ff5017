/* Names that become file names: one rule for the image store and the pipeline checks. */
#include "common/common.h"

#include <string.h>

bool vmci_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > VMCI_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool deb_package_name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len < 2 || len > 128 ||
	    !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789+-.") == len;
}

bool word_listed(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; *p && *p != '\n';) {
		p += strspn(p, " \t");
		size_t len = strcspn(p, " \t\n");
		if (len == n && !strncmp(p, word, n))
			return true;
		p += len;
	}
	return false;
}
