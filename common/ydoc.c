/*
 * Typed reading of a YAML document whose shape the reader knows: libyaml
 * loads it whole (yaml_document_t, aliases shared, never copied), and each
 * read checks one node against what the file's format expects. A refusal
 * names the file, line and column of the node, what was expected and what
 * was found.
 */
#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct ydoc {
	char *file;
	yaml_document_t doc;
	struct vmci_err *err;
};

/* A node is libyaml's own: struct ydoc_node is never defined, only pointed to. */
static const yaml_node_t *Y(const struct ydoc_node *n)
{
	return (const yaml_node_t *)n;
}

static const struct ydoc_node *node(struct ydoc *d, int index)
{
	return (const struct ydoc_node *)yaml_document_get_node(&d->doc, index);
}

/* libyaml's complaint, at the place it found the problem. */
static int yaml_problem(const char *file, const yaml_parser_t *y, struct vmci_err *err)
{
	const yaml_mark_t *m = &y->problem_mark;
	return vmci_err_set(err, EINVAL, "%s:%zu:%zu: error: %s%s%s", file, m->line + 1,
			    m->column + 1, y->problem ? y->problem : "invalid YAML",
			    y->context ? " " : "", y->context ? y->context : "");
}

/* Loads the one document of y into d->doc; a second document is an error. */
static int load(struct ydoc *d, yaml_parser_t *y)
{
	if (!yaml_parser_load(y, &d->doc))
		return yaml_problem(d->file, y, d->err);
	yaml_document_t more;
	if (!yaml_parser_load(y, &more)) {
		yaml_document_delete(&d->doc);
		return yaml_problem(d->file, y, d->err);
	}
	const yaml_node_t *extra = yaml_document_get_root_node(&more);
	int rc = 0;
	if (extra)
		rc = vmci_err_set(d->err, EINVAL,
				  "%s:%zu:1: error: a second YAML document: the file must hold one "
				  "(remove what follows '---')",
				  d->file, extra->start_mark.line + 1);
	yaml_document_delete(&more);
	if (rc)
		yaml_document_delete(&d->doc);
	return rc;
}

int ydoc_parse(const char *file, const void *text, size_t len, struct vmci_err *err,
	       struct ydoc **out)
{
	*out = NULL;
	struct ydoc *d = calloc(1, sizeof(*d));
	yaml_parser_t y;
	if (!d || !(d->file = strdup(file)) || !yaml_parser_initialize(&y)) {
		if (d)
			free(d->file);
		free(d);
		return vmci_err_set(err, ENOMEM, "out of memory reading %s", file);
	}
	d->err = err;
	yaml_parser_set_input_string(&y, text ? text : "", text ? len : 0);
	int rc = load(d, &y);
	yaml_parser_delete(&y);
	if (rc) {
		free(d->file);
		free(d);
		return rc;
	}
	*out = d;
	return 0;
}

void ydoc_free(struct ydoc *d)
{
	if (!d)
		return;
	yaml_document_delete(&d->doc);
	free(d->file);
	free(d);
}

const struct ydoc_node *ydoc_root(struct ydoc *d)
{
	return (const struct ydoc_node *)yaml_document_get_root_node(&d->doc);
}

int ydoc_error(struct ydoc *d, const struct ydoc_node *n, int code, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!n)
		return vmci_err_set(d->err, code, "%s: error: %s", d->file, msg);
	return vmci_err_set(d->err, code, "%s:%zu:%zu: error: %s", d->file,
			    Y(n)->start_mark.line + 1, Y(n)->start_mark.column + 1, msg);
}

/* ---- what a node is ------------------------------------------------------- */

enum ydoc_kind ydoc_kind(const struct ydoc_node *n)
{
	const yaml_node_t *y = Y(n);
	if (y->type == YAML_MAPPING_NODE)
		return YDOC_MAP;
	if (y->type == YAML_SEQUENCE_NODE)
		return YDOC_LIST;
	if (y->type != YAML_SCALAR_NODE)
		return YDOC_NULL; /* libyaml's YAML_NO_NODE */
	if (y->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return YDOC_SCALAR;
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	for (size_t i = 0; i < ARRAY_LEN(nulls); i++)
		if (!strcmp((const char *)y->data.scalar.value, nulls[i]))
			return YDOC_NULL;
	return YDOC_SCALAR;
}

const char *ydoc_what(const struct ydoc_node *n)
{
	static const char *const what[] = {
	    [YDOC_NULL] = "empty",
	    [YDOC_SCALAR] = "a string",
	    [YDOC_LIST] = "a list",
	    [YDOC_MAP] = "a mapping",
	};
	return what[ydoc_kind(n)];
}

const char *ydoc_scalar(const struct ydoc_node *n)
{
	return Y(n)->type == YAML_SCALAR_NODE ? (const char *)Y(n)->data.scalar.value : NULL;
}

size_t ydoc_len(const struct ydoc_node *n)
{
	if (Y(n)->type != YAML_SEQUENCE_NODE)
		return 0;
	return (size_t)(Y(n)->data.sequence.items.top - Y(n)->data.sequence.items.start);
}

const struct ydoc_node *ydoc_item(struct ydoc *d, const struct ydoc_node *n, size_t i)
{
	return i < ydoc_len(n) ? node(d, Y(n)->data.sequence.items.start[i]) : NULL;
}

/* ---- typed reads ------------------------------------------------------------ */

int ydoc_map(struct ydoc *d, const struct ydoc_node *n, const char *what, const char *const *keys,
	     size_t n_keys, const struct ydoc_node **values)
{
	for (size_t i = 0; i < n_keys; i++)
		values[i] = NULL;
	if (ydoc_kind(n) != YDOC_MAP)
		return ydoc_error(d, n, EINVAL, "%s must be a mapping, not %s", what, ydoc_what(n));
	for (const yaml_node_pair_t *p = Y(n)->data.mapping.pairs.start;
	     p < Y(n)->data.mapping.pairs.top; p++) {
		const struct ydoc_node *k = node(d, p->key);
		if (ydoc_kind(k) != YDOC_SCALAR)
			return ydoc_error(d, k, EINVAL, "keys of %s must be strings, not %s", what,
					  ydoc_what(k));
		const char *key = ydoc_scalar(k);
		size_t i = 0;
		while (i < n_keys && strcmp(keys[i], key))
			i++;
		if (i == n_keys) {
			const char *near = suggest_nearest(key, keys, n_keys);
			char hint[96] = "", known[256] = "";
			if (near)
				snprintf(hint, sizeof(hint), " (did you mean '%s'?)", near);
			for (size_t j = 0; j < n_keys; j++)
				snprintf(known + strlen(known), sizeof(known) - strlen(known),
					 "%s%s", j ? ", " : "", keys[j]);
			return ydoc_error(d, k, EINVAL, "unknown key '%.64s' in %s%s (known: %s)",
					  key, what, hint, known);
		}
		if (values[i])
			return ydoc_error(d, k, EINVAL, "'%s' appears twice in %s", key, what);
		values[i] = node(d, p->value);
	}
	return 0;
}

/* The text of a non-empty scalar of at most max bytes without a NUL, or an error. */
static int text_of(struct ydoc *d, const struct ydoc_node *n, const char *what, size_t max,
		   const char **out)
{
	if (ydoc_kind(n) != YDOC_SCALAR || !Y(n)->data.scalar.length)
		return ydoc_error(d, n, EINVAL, "%s must be a non-empty string, not %s", what,
				  ydoc_kind(n) == YDOC_SCALAR ? "empty" : ydoc_what(n));
	const char *v = ydoc_scalar(n);
	if (strlen(v) != Y(n)->data.scalar.length)
		return ydoc_error(d, n, EINVAL, "%s holds a NUL byte", what);
	if (Y(n)->data.scalar.length > max)
		return ydoc_error(d, n, EINVAL, "%s is too long (at most %zu bytes)", what, max);
	*out = v;
	return 0;
}

int ydoc_string(struct ydoc *d, const struct ydoc_node *n, const char *what, char *out, size_t size)
{
	const char *v;
	int rc = text_of(d, n, what, size - 1, &v);
	if (!rc)
		memcpy(out, v, strlen(v) + 1);
	return rc;
}

int ydoc_strdup(struct ydoc *d, const struct ydoc_node *n, const char *what, char **out)
{
	const char *v;
	int rc = text_of(d, n, what, SIZE_MAX - 1, &v);
	if (!rc && !(*out = strdup(v)))
		rc = vmci_err_set(d->err, ENOMEM, "out of memory");
	return rc;
}

int ydoc_strings(struct ydoc *d, const struct ydoc_node *n, const char *what, size_t max, char ***v,
		 size_t *count)
{
	if (ydoc_kind(n) == YDOC_NULL)
		return 0;
	if (ydoc_kind(n) != YDOC_LIST)
		return ydoc_error(d, n, EINVAL, "%s must be a list, not %s", what, ydoc_what(n));
	for (size_t i = 0; i < ydoc_len(n); i++) {
		const struct ydoc_node *item = ydoc_item(d, n, i);
		const char *text = ydoc_scalar(item);
		if (ydoc_kind(item) != YDOC_SCALAR || !text[0])
			return ydoc_error(d, item, EINVAL,
					  "each entry of %s must be a non-empty string, not %s",
					  what, text ? "empty" : ydoc_what(item));
		if (strlen(text) != Y(item)->data.scalar.length)
			return ydoc_error(d, item, EINVAL, "an entry of %s holds a NUL byte", what);
		if (Y(item)->data.scalar.length > max)
			return ydoc_error(d, item, EINVAL,
					  "an entry of %s is too long (at most %zu bytes)", what,
					  max);
		char **grown = realloc(*v, (*count + 1) * sizeof(**v));
		if (grown)
			*v = grown;
		if (!grown || !(grown[*count] = strdup(text)))
			return vmci_err_set(d->err, ENOMEM, "out of memory");
		(*count)++;
	}
	return 0;
}

int ydoc_int(struct ydoc *d, const struct ydoc_node *n, const char *what, int min, int max,
	     int *out)
{
	const char *text = ydoc_kind(n) == YDOC_SCALAR ? ydoc_scalar(n) : NULL;
	const char *digits = text && text[0] == '-' ? text + 1 : text;
	if (digits && digits[0] && strlen(digits) <= 10 &&
	    strspn(digits, "0123456789") == strlen(digits)) {
		long long v = strtoll(text, NULL, 10);
		if (v >= min && v <= max) {
			*out = (int)v;
			return 0;
		}
	}
	if (!text)
		return ydoc_error(d, n, EINVAL, "%s must be a whole number from %d to %d, not %s",
				  what, min, max, ydoc_what(n));
	return ydoc_error(d, n, EINVAL, "%s must be a whole number from %d to %d, not '%.40s'",
			  what, min, max, text);
}

int ydoc_bool(struct ydoc *d, const struct ydoc_node *n, const char *what, bool *out)
{
	static const char *const words[] = {"true", "True", "TRUE", "false", "False", "FALSE"};
	const char *text = ydoc_kind(n) == YDOC_SCALAR ? ydoc_scalar(n) : NULL;
	for (size_t i = 0; text && i < ARRAY_LEN(words); i++)
		if (!strcmp(text, words[i])) {
			*out = i < 3;
			return 0;
		}
	if (!text)
		return ydoc_error(d, n, EINVAL, "%s must be true or false, not %s", what,
				  ydoc_what(n));
	return ydoc_error(d, n, EINVAL, "%s must be true or false, not '%.40s'", what, text);
}
