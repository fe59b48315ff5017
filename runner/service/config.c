/*
 * The service's config file, read with libyaml. Mistakes are reported
 * at their place, "serve.yml:3:9: error: ...", and stop the service.
 */
#include "runner/service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define CONFIG_MAX_BYTES (1u << 20)

struct parse {
	const char *file;
	yaml_document_t *doc;
	struct vmci_err *err;
};

__attribute__((format(printf, 3, 4))) static int at(struct parse *p, const yaml_node_t *n,
						    const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return vmci_err_set(p->err, EINVAL, "%s:%zu:%zu: error: %s", p->file,
			    n->start_mark.line + 1, n->start_mark.column + 1, msg);
}

static yaml_node_t *node(struct parse *p, int index)
{
	return yaml_document_get_node(p->doc, index);
}

static int string(struct parse *p, const yaml_node_t *n, const char *what, char **out)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.length == 0)
		return at(p, n, "%s must be a non-empty string", what);
	free(*out);
	*out = strndup((const char *)n->data.scalar.value, n->data.scalar.length);
	return *out ? 0 : vmci_err_set(p->err, ENOMEM, "out of memory");
}

static int integer(struct parse *p, const yaml_node_t *n, const char *what, int min, int max,
		   int *out)
{
	char *end = NULL;
	long v =
	    n->type == YAML_SCALAR_NODE ? strtol((const char *)n->data.scalar.value, &end, 10) : 0;
	if (!end || end == (char *)n->data.scalar.value || *end || v < min || v > max)
		return at(p, n, "%s must be a whole number from %d to %d", what, min, max);
	*out = (int)v;
	return 0;
}

typedef int (*value_fn)(struct parse *p, const char *key, const yaml_node_t *v, void *ctx);

/* Calls fn for each key of mapping n; a key not in keys is an error naming the nearest. */
static int mapping(struct parse *p, const yaml_node_t *n, const char *what, const char *const *keys,
		   size_t n_keys, value_fn fn, void *ctx)
{
	if (n->type != YAML_MAPPING_NODE)
		return at(p, n, "%s must be a mapping", what);
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = node(p, pr->key), *v = node(p, pr->value);
		if (k->type != YAML_SCALAR_NODE)
			return at(p, k, "keys of %s must be strings", what);
		const char *key = (const char *)k->data.scalar.value;
		size_t i = 0;
		while (i < n_keys && strcmp(keys[i], key))
			i++;
		if (i == n_keys) {
			const char *near = suggest_nearest(key, keys, n_keys);
			return at(p, k, "unknown key '%s' in %s%s%s%s", key, what,
				  near ? " (did you mean '" : "", near ? near : "",
				  near ? "'?)" : "");
		}
		int rc = fn(p, key, v, ctx);
		if (rc)
			return rc;
	}
	return 0;
}

static int host_value(struct parse *p, const char *key, const yaml_node_t *v, void *ctx)
{
	struct service_config *c = ctx;
	if (!strcmp(key, "name"))
		return string(p, v, "host.name", &c->host);
	if (!strcmp(key, "capacity"))
		return integer(p, v, "host.capacity", 1, 1024, &c->capacity);
	return 0; /* url: for the several-hosts service */
}

static int repo_value(struct parse *p, const char *key, const yaml_node_t *v, void *ctx)
{
	struct service_repo *r = ctx;
	if (!strcmp(key, "name"))
		return string(p, v, "a repo's name", &r->name);
	if (!strcmp(key, "url"))
		return string(p, v, "a repo's url", &r->url);
	return 0; /* forge settings: read by the forge issue */
}

static int repos(struct parse *p, const yaml_node_t *n, struct service_config *c)
{
	static const char *const keys[] = {
	    "name", "url", "forge", "webhook_secret_file", "status_token_file", "api_url"};
	if (n->type != YAML_SEQUENCE_NODE)
		return at(p, n, "repos must be a list of {name, url}");
	size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	c->repos = calloc(count ? count : 1, sizeof(*c->repos));
	if (!c->repos)
		return vmci_err_set(p->err, ENOMEM, "out of memory");
	for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
	     i++) {
		yaml_node_t *item = node(p, *i);
		struct service_repo *r = &c->repos[c->n_repos++];
		int rc = mapping(p, item, "a repo", keys, ARRAY_LEN(keys), repo_value, r);
		if (rc)
			return rc;
		if (!r->name || !r->url)
			return at(p, item, "a repo needs a name and a url");
		for (struct service_repo *o = c->repos; o < r; o++)
			if (!strcmp(o->name, r->name))
				return at(p, item, "repo '%s' is listed twice", r->name);
	}
	return 0;
}

static int top_value(struct parse *p, const char *key, const yaml_node_t *v, void *ctx)
{
	static const char *const host_keys[] = {"name", "capacity", "url"};
	struct service_config *c = ctx;
	if (!strcmp(key, "listen")) {
		int rc = string(p, v, "listen", &c->listen);
		if (rc == 0 && !strrchr(c->listen, ':'))
			return at(p, v, "listen must be ADDR:PORT, e.g. 127.0.0.1:8080");
		return rc;
	}
	if (!strcmp(key, "db"))
		return string(p, v, "db", &c->db);
	if (!strcmp(key, "host"))
		return mapping(p, v, "host", host_keys, ARRAY_LEN(host_keys), host_value, c);
	if (!strcmp(key, "repos"))
		return repos(p, v, c);
	return 0; /* public_url, public_read: later issues */
}

int service_config_parse(const char *file, const char *text, size_t len, struct service_config *out,
			 struct vmci_err *err)
{
	static const char *const keys[] = {"listen", "db",    "public_url",
					   "host",   "repos", "public_read"};
	memset(out, 0, sizeof(*out));
	yaml_parser_t y;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&y))
		return vmci_err_set(err, ENOMEM, "out of memory");
	yaml_parser_set_input_string(&y, (const unsigned char *)text, len);
	int rc = 0;
	if (!yaml_parser_load(&y, &doc)) {
		rc = vmci_err_set(err, EINVAL, "%s:%zu:%zu: error: %s", file,
				  y.problem_mark.line + 1, y.problem_mark.column + 1,
				  y.problem ? y.problem : "not YAML");
		yaml_parser_delete(&y);
		return rc;
	}
	struct parse p = {.file = file, .doc = &doc, .err = err};
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (root)
		rc = mapping(&p, root, "the config", keys, ARRAY_LEN(keys), top_value, out);
	yaml_document_delete(&doc);
	yaml_parser_delete(&y);
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
