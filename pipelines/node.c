/*
 * Typed reads of YAML nodes. The format is strict about types (`steps:
 * "make"` is an error, not a one-step job) and every refusal says what
 * was expected and what was found, at the node's position.
 *
 * Scalars are typed here rather than by a YAML schema: booleans are only
 * true/false (so `on`, `yes` and `no` stay strings, as in YAML 1.2), and
 * numbers must be plain (unquoted).
 */
#include "pipelines/internal.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

bool pipe_node_is_null(const struct ynode *n)
{
	if (n->kind != Y_SCALAR || n->style != YS_PLAIN)
		return false;
	return n->len == 0 || !strcmp(n->str, "~") || !strcmp(n->str, "null") ||
	       !strcmp(n->str, "Null") || !strcmp(n->str, "NULL");
}

static bool is_bool_text(const char *s)
{
	static const char *const words[] = {"true", "True", "TRUE", "false", "False", "FALSE"};
	for (size_t i = 0; i < ARRAY_LEN(words); i++)
		if (!strcmp(s, words[i]))
			return true;
	return false;
}

static bool is_number_text(const char *s)
{
	if (*s == '-' || *s == '+')
		s++;
	if (!isdigit((unsigned char)*s))
		return false;
	char *end;
	strtod(s, &end);
	return *end == 0;
}

const char *pipe_node_what(const struct ynode *n)
{
	if (n->kind == Y_SEQ)
		return "a list";
	if (n->kind == Y_MAP)
		return "a mapping";
	if (pipe_node_is_null(n))
		return "null";
	if (n->style == YS_PLAIN && is_bool_text(n->str))
		return "a boolean";
	if (n->style == YS_PLAIN && is_number_text(n->str))
		return "a number";
	return "a string";
}

/* A value as messages show it: 'text' (shortened, one line), or its type. */
static const char *shown(struct pipe_ctx *ctx, const struct ynode *n)
{
	if (n->kind != Y_SCALAR || pipe_node_is_null(n))
		return pipe_node_what(n);
	size_t len = strcspn(n->str, "\n");
	bool cut = len > 40 || len < n->len;
	if (len > 40)
		len = 40;
	/* "1" quoted is a string: say so, or "not '1'" would puzzle. */
	bool quoted = (n->style == YS_SINGLE || n->style == YS_DOUBLE) &&
		      (is_number_text(n->str) || is_bool_text(n->str));
	const char *s = pipe_arena_printf(ctx->tmp, "'%.*s%s'%s", (int)len, n->str,
					  cut ? "..." : "", quoted ? " (quoted, so a string)" : "");
	if (!s)
		ctx->oom = true;
	return s ? s : "a string";
}

struct ynode *pipe_map_key(const struct ynode *map, const char *key)
{
	if (!map || map->kind != Y_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++)
		if (!strcmp(map->pairs[i].key->str, key))
			return map->pairs[i].key;
	return NULL;
}

struct ynode *pipe_map_get(const struct ynode *map, const char *key)
{
	if (!map || map->kind != Y_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++)
		if (!strcmp(map->pairs[i].key->str, key))
			return map->pairs[i].val;
	return NULL;
}

bool pipe_is_extension_key(const struct ynode *key)
{
	return key->len > 2 && key->str[0] == 'x' && key->str[1] == '-';
}

int pipe_check_keys(struct pipe_ctx *ctx, const struct ynode *map, const char *const *known,
		    size_t n_known, const char *where)
{
	int unknown = 0;
	for (size_t i = 0; i < map->n; i++) {
		const struct ynode *k = map->pairs[i].key;
		bool ok = false;
		for (size_t j = 0; j < n_known && !ok; j++)
			ok = !strcmp(k->str, known[j]);
		if (ok)
			continue;
		unknown++;
		pipe_error_at(ctx, k->pos, "unknown key '%s' in %s%s", k->str, where,
			      pipe_did_you_mean(ctx, k->str, known, n_known));
	}
	return unknown;
}

int pipe_node_expect(struct pipe_ctx *ctx, const struct ynode *n, enum ykind kind, const char *what,
		     const char *expected)
{
	if (n->kind == kind)
		return 0;
	return pipe_error_at(ctx, n->pos, "%s must be %s, not %s", what, expected,
			     pipe_node_what(n));
}

int pipe_node_string(struct pipe_ctx *ctx, const struct ynode *n, const char *what,
		     const char **out)
{
	if (n->kind != Y_SCALAR || pipe_node_is_null(n))
		return pipe_error_at(ctx, n->pos, "%s must be a string, not %s", what,
				     pipe_node_what(n));
	const char *expr = strstr(n->str, "${{");
	if (expr)
		return pipe_error_at(ctx, pipe_scalar_pos(ctx, n, (size_t)(expr - n->str)),
				     "%s cannot use ${{ }}: expressions expand only in image, env, "
				     "run and name",
				     what);
	*out = pipe_arena_strndup(ctx->keep, n->str, n->len);
	if (!*out) {
		ctx->oom = true;
		return -ENOMEM;
	}
	return 0;
}

int pipe_node_bool(struct pipe_ctx *ctx, const struct ynode *n, const char *what, bool *out)
{
	if (n->kind == Y_SCALAR && n->style == YS_PLAIN && is_bool_text(n->str)) {
		*out = n->str[0] == 't' || n->str[0] == 'T';
		return 0;
	}
	return pipe_error_at(ctx, n->pos, "%s must be true or false, not %s", what, shown(ctx, n));
}

int pipe_node_int(struct pipe_ctx *ctx, const struct ynode *n, const char *what, int min, int max,
		  int *out)
{
	if (n->kind == Y_SCALAR && n->style == YS_PLAIN && n->len > 0 && n->len <= 10) {
		bool digits = true;
		for (size_t i = 0; i < n->len; i++)
			digits = digits && isdigit((unsigned char)n->str[i]);
		long long v = digits ? strtoll(n->str, NULL, 10) : LLONG_MIN;
		if (v >= min && v <= max) {
			*out = (int)v;
			return 0;
		}
	}
	return pipe_error_at(ctx, n->pos, "%s must be a whole number from %d to %d, not %s", what,
			     min, max, shown(ctx, n));
}

int pipe_node_duration(struct pipe_ctx *ctx, const struct ynode *n, const char *what,
		       int64_t *out_ms)
{
	if (n->kind == Y_SCALAR && !pipe_node_is_null(n) && !parse_duration(n->str, 0, out_ms) &&
	    *out_ms > 0)
		return 0;
	return pipe_error_at(ctx, n->pos, "%s must be a duration such as 90s, 20m or 1h30m, not %s",
			     what, shown(ctx, n));
}

int pipe_node_size_mb(struct pipe_ctx *ctx, const struct ynode *n, const char *what,
		      int64_t *out_mb)
{
	/* Whole MiB: "512M", "1G", "2T" (also "1GiB", "1g"). */
	int64_t bytes;
	if (n->kind == Y_SCALAR && !pipe_node_is_null(n) &&
	    !parse_size(n->str, SIZE_NEED_UNIT, &bytes) && bytes > 0 && bytes % (1 << 20) == 0) {
		*out_mb = bytes >> 20;
		return 0;
	}
	return pipe_error_at(ctx, n->pos, "%s must be a size such as 512M or 1G, not %s", what,
			     shown(ctx, n));
}

bool pipe_is_ident(const char *s, size_t len, bool dash_ok)
{
	if (len == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(isalnum(c) || c == '_' || (dash_ok && c == '-')))
			return false;
	}
	return true;
}

/* Characters (not bytes) in s[0..n), as libyaml counts columns. */
static int chars(const char *s, size_t n)
{
	int c = 0;
	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xC0) != 0x80;
	return c;
}

/*
 * A literal block scalar keeps its lines: line k of the value is source
 * line k after the header, shifted by the block's indentation (that of its
 * first non-blank line).
 */
static struct ypos literal_pos(const struct pipe_ctx *ctx, const struct ynode *n, size_t off)
{
	const char *t = ctx->text;
	size_t i = n->start;
	while (i < ctx->len && t[i] != '\n')
		i++;
	size_t body = i + 1, indent = 0;
	for (size_t j = body; j < ctx->len && j < n->end;) {
		size_t k = j;
		while (k < ctx->len && t[k] == ' ')
			k++;
		if (k < ctx->len && t[k] != '\n' && t[k] != '\r') {
			indent = k - j;
			break;
		}
		while (k < ctx->len && t[k] != '\n')
			k++;
		j = k + 1;
	}
	int line = n->pos.line + 1;
	size_t line_start = 0;
	for (size_t j = 0; j < off; j++) {
		if (n->str[j] == '\n') {
			line++;
			line_start = j + 1;
		}
	}
	if (line > n->end_line)
		return n->pos;
	return (struct ypos){line, (int)indent + chars(n->str + line_start, off - line_start) + 1};
}

struct ypos pipe_scalar_pos(const struct pipe_ctx *ctx, const struct ynode *n, size_t off)
{
	if (n->kind != Y_SCALAR || off > n->len || n->end > ctx->len)
		return n->pos;
	size_t span = n->end - n->start;
	bool one_line = n->end_line == n->pos.line;
	switch (n->style) {
	case YS_PLAIN:
		/* The source is the value itself unless the scalar was folded over lines. */
		if (one_line && span == n->len)
			return (struct ypos){n->pos.line, n->pos.col + chars(n->str, off)};
		break;
	case YS_SINGLE:
	case YS_DOUBLE:
		/* Exact only without escapes, where the source is the value in quotes. */
		if (one_line && span == n->len + 2 &&
		    !memcmp(ctx->text + n->start + 1, n->str, n->len))
			return (struct ypos){n->pos.line, n->pos.col + 1 + chars(n->str, off)};
		break;
	case YS_LITERAL:
		return literal_pos(ctx, n, off);
	case YS_FOLDED:
		break;
	}
	return n->pos;
}
