/*
 * The service's config file, read with common's typed YAML reader
 * (ydoc). Mistakes are reported at their place, "serve.yml:3:9: error:
 * ...", and stop the service.
 */
#include "runner/service.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (1u << 20)

static int read_host(struct ydoc *d, const struct ydoc_node *n, struct service_config *c)
{
	/* url: for the several-hosts service. */
	static const char *const keys[] = {"name", "capacity", "url"};
	const struct ydoc_node *v[ARRAY_LEN(keys)];
	int rc = ydoc_map(d, n, "host", keys, ARRAY_LEN(keys), v);
	if (!rc && v[0])
		rc = ydoc_strdup(d, v[0], "host.name", &c->host);
	if (!rc && v[1])
		rc = ydoc_int(d, v[1], "host.capacity", 1, 1024, &c->capacity);
	return rc;
}

static int read_repos(struct ydoc *d, const struct ydoc_node *n, struct service_config *c)
{
	/* The forge settings are read by the forge issue. */
	static const char *const keys[] = {
	    "name", "url", "forge", "webhook_secret_file", "status_token_file", "api_url"};
	if (ydoc_kind(n) != YDOC_LIST)
		return ydoc_error(d, n, EINVAL, "repos must be a list of {name, url}, not %s",
				  ydoc_what(n));
	size_t count = ydoc_len(n);
	c->repos = calloc(count ? count : 1, sizeof(*c->repos));
	if (!c->repos)
		return ydoc_error(d, NULL, ENOMEM, "out of memory");
	for (size_t i = 0; i < count; i++) {
		const struct ydoc_node *item = ydoc_item(d, n, i), *v[ARRAY_LEN(keys)];
		struct service_repo *r = &c->repos[c->n_repos++];
		int rc = ydoc_map(d, item, "a repo", keys, ARRAY_LEN(keys), v);
		if (!rc && v[0])
			rc = ydoc_strdup(d, v[0], "a repo's name", &r->name);
		if (!rc && v[1])
			rc = ydoc_strdup(d, v[1], "a repo's url", &r->url);
		if (rc)
			return rc;
		if (!r->name || !r->url)
			return ydoc_error(d, item, EINVAL, "a repo needs a name and a url");
		for (struct service_repo *o = c->repos; o < r; o++)
			if (!strcmp(o->name, r->name))
				return ydoc_error(d, item, EINVAL, "repo '%s' is listed twice",
						  r->name);
	}
	return 0;
}

static int read_config(struct ydoc *d, struct service_config *c)
{
	enum { LISTEN, DB, PUBLIC_URL, HOST, REPOS, PUBLIC_READ, NKEYS };
	/* public_url: for the forge issue (links in commit statuses). */
	static const char *const keys[NKEYS] = {"listen", "db",	   "public_url",
						"host",	  "repos", "public_read"};
	const struct ydoc_node *root = ydoc_root(d), *v[NKEYS];
	if (!root)
		return 0; /* an empty file: every default */
	int rc = ydoc_map(d, root, "the config", keys, NKEYS, v);
	if (!rc && v[LISTEN]) {
		rc = ydoc_strdup(d, v[LISTEN], "listen", &c->listen);
		if (!rc && !strrchr(c->listen, ':'))
			return ydoc_error(d, v[LISTEN], EINVAL,
					  "listen must be ADDR:PORT, e.g. 127.0.0.1:8080");
	}
	if (!rc && v[DB])
		rc = ydoc_strdup(d, v[DB], "db", &c->db);
	if (!rc && v[PUBLIC_READ])
		rc = ydoc_bool(d, v[PUBLIC_READ], "public_read", &c->public_read);
	if (!rc && v[HOST])
		rc = read_host(d, v[HOST], c);
	if (!rc && v[REPOS])
		rc = read_repos(d, v[REPOS], c);
	return rc;
}

int service_config_parse(const char *file, const char *text, size_t len, struct service_config *out,
			 struct vmci_err *err)
{
	memset(out, 0, sizeof(*out));
	struct ydoc *d = NULL;
	int rc = ydoc_parse(file, text, len, err, &d);
	if (rc == 0)
		rc = read_config(d, out);
	ydoc_free(d);
	if (rc == 0 && !out->listen && !(out->listen = strdup(SERVICE_DEFAULT_LISTEN)))
		rc = vmci_err_set(err, ENOMEM, "out of memory");
	if (rc)
		service_config_free(out);
	return rc;
}

int service_config_load(const char *path, struct service_config *out, struct vmci_err *err)
{
	struct buf text = {0};
	int rc = fs_read_file(path, CONFIG_MAX_BYTES, &text, err);
	if (rc == 0)
		rc = service_config_parse(path, (const char *)text.data, text.len, out, err);
	buf_free(&text);
	return rc;
}

void service_config_free(struct service_config *c)
{
	for (size_t i = 0; i < c->n_repos; i++) {
		free(c->repos[i].name);
		free(c->repos[i].url);
	}
	free(c->repos);
	free(c->listen);
	free(c->db);
	free(c->host);
	memset(c, 0, sizeof(*c));
}

const struct service_repo *service_config_repo(const struct service_config *c, const char *name)
{
	for (size_t i = 0; c && name && i < c->n_repos; i++)
		if (!strcmp(c->repos[i].name, name))
			return &c->repos[i];
	return NULL;
}
