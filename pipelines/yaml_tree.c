/*
 * libyaml events -> a tree of nodes that remember where they are.
 *
 * libyaml's own loader (yaml_document_t) drops nothing we need but
 * expands nothing either, and gives no say over aliases. Building from
 * events lets us keep marks, resolve aliases by sharing the anchored
 * node (never copying it), apply merge keys (`<<`, YAML 1.1 merge spec),
 * report duplicate keys, and bound the document: each node's weight is
 * the node count it would have with its aliases copied, and a document
 * heavier than PIPE_MAX_NODES (a "billion laughs") is refused before any
 * walk over it could take long.
 */
#include "pipelines/internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct raw_pair {
	struct ynode *key;
	struct ynode *val;
};

/*
 * A collection being built. Its children grow in malloc'd arrays, copied into the arena on close.
 */
struct frame {
	struct ynode *node;
	struct ynode **items; /* sequence items, or mapping keys and values alternating */
	size_t n, cap;
};

struct builder {
	struct pipe_ctx *ctx;
	struct frame *stack;
	size_t depth, cap;
	struct pipe_strmap anchors; /* name -> index into anchor_nodes */
	struct ynode **anchor_nodes;
	size_t n_anchors, cap_anchors;
	struct ynode *root;
	int documents;
};

static struct ypos mark_pos(yaml_mark_t m)
{
	struct ypos p = {m.line >= INT_MAX ? INT_MAX - 1 : (int)m.line + 1,
			 m.column >= INT_MAX ? INT_MAX - 1 : (int)m.column + 1};
	return p;
}

static struct ynode *new_node(struct builder *b, enum ykind kind, const yaml_event_t *ev)
{
	struct ynode *n = pipe_arena_alloc(b->ctx->tmp, sizeof(*n));
	if (!n)
		return NULL;
	n->kind = kind;
	n->pos = mark_pos(ev->start_mark);
	n->end_line = mark_pos(ev->end_mark).line;
	n->start = ev->start_mark.index;
	n->end = ev->end_mark.index;
	n->weight = 1;
	return n;
}

static int too_big(struct builder *b, struct ypos pos)
{
	return pipe_error_at(b->ctx, pos,
			     "the document has more than %d nodes, counting each alias as a copy "
			     "of its anchor; anchors may not multiply a file this much",
			     PIPE_MAX_NODES);
}

/* Hands a finished node, written at pos, to its parent (or makes it the root). */
static int add_child(struct builder *b, struct ynode *child, struct ypos pos)
{
	if (b->depth == 0) {
		b->root = child;
		return 0;
	}
	struct frame *f = &b->stack[b->depth - 1];
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		struct ynode **items = realloc(f->items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		f->items = items;
		f->cap = cap;
	}
	f->items[f->n++] = child;
	f->node->weight += child->weight;
	if (f->node->weight > PIPE_MAX_NODES)
		return too_big(b, pos);
	return 0;
}

static int set_anchor(struct builder *b, const yaml_char_t *anchor, struct ynode *n)
{
	if (!anchor)
		return 0;
	const char *name = pipe_arena_strdup(b->ctx->tmp, (const char *)anchor);
	if (!name)
		return -ENOMEM;
	long old = -1;
	int rc = pipe_strmap_add(&b->anchors, name, strlen(name), (long)b->n_anchors, &old);
	if (rc < 0)
		return rc;
	if (rc == 0) { /* redefined: later aliases mean the new node */
		b->anchor_nodes[old] = n;
		return 0;
	}
	if (b->n_anchors == b->cap_anchors) {
		size_t cap = b->cap_anchors ? b->cap_anchors * 2 : 16;
		struct ynode **nodes = realloc(b->anchor_nodes, cap * sizeof(*nodes));
		if (!nodes)
			return -ENOMEM;
		b->anchor_nodes = nodes;
		b->cap_anchors = cap;
	}
	b->anchor_nodes[b->n_anchors++] = n;
	return 0;
}

static int on_scalar(struct builder *b, const yaml_event_t *ev)
{
	struct ynode *n = new_node(b, Y_SCALAR, ev);
	if (!n)
		return -ENOMEM;
	switch (ev->data.scalar.style) {
	case YAML_SINGLE_QUOTED_SCALAR_STYLE:
		n->style = YS_SINGLE;
		break;
	case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
		n->style = YS_DOUBLE;
		break;
	case YAML_LITERAL_SCALAR_STYLE:
		n->style = YS_LITERAL;
		break;
	case YAML_FOLDED_SCALAR_STYLE:
		n->style = YS_FOLDED;
		break;
	default:
		n->style = YS_PLAIN;
		break;
	}
	n->len = ev->data.scalar.length;
	n->str = pipe_arena_strndup(b->ctx->tmp, (const char *)ev->data.scalar.value, n->len);
	if (!n->str)
		return -ENOMEM;
	int rc = set_anchor(b, ev->data.scalar.anchor, n);
	return rc ? rc : add_child(b, n, n->pos);
}

static int on_alias(struct builder *b, const yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	long i = pipe_strmap_get(&b->anchors, name, strlen(name));
	struct ynode *target = i >= 0 ? b->anchor_nodes[i] : NULL;
	/* Fatal, as in libyaml's own loader: the tree would have a hole where the alias is. */
	if (!target || target->open)
		return pipe_error_at(
		    b->ctx, mark_pos(ev->start_mark),
		    target ? "alias '*%s' refers to a node that contains it"
			   : "alias '*%s' refers to no anchor '&%s' defined before it",
		    name, name);
	return add_child(b, target, mark_pos(ev->start_mark));
}

static int on_start(struct builder *b, const yaml_event_t *ev, enum ykind kind)
{
	if (b->depth >= PIPE_MAX_DEPTH)
		return pipe_error_at(b->ctx, mark_pos(ev->start_mark),
				     "nesting deeper than %d levels", PIPE_MAX_DEPTH);
	struct ynode *n = new_node(b, kind, ev);
	if (!n)
		return -ENOMEM;
	n->open = true;
	const yaml_char_t *anchor =
	    kind == Y_SEQ ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
	int rc = set_anchor(b, anchor, n);
	if (rc)
		return rc;
	if (b->depth == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct frame *stack = realloc(b->stack, cap * sizeof(*stack));
		if (!stack)
			return -ENOMEM;
		b->stack = stack;
		b->cap = cap;
	}
	b->stack[b->depth++] = (struct frame){.node = n};
	return 0;
}

static bool is_merge_key(const struct ynode *k)
{
	return k->kind == Y_SCALAR && k->style == YS_PLAIN && !strcmp(k->str, "<<");
}

/* Adds one pair unless its key is already in the map; 1 when added. */
static int put_pair(struct builder *b, struct pipe_strmap *seen, struct ypair *out, size_t *n,
		    struct ynode *key, struct ynode *val)
{
	int rc = pipe_strmap_add(seen, key->str, key->len, (long)*n, NULL);
	if (rc == 1)
		out[(*n)++] = (struct ypair){key, val};
	return rc;
}

/*
 * Merges the pairs of src (a mapping, or a list of mappings, as a `<<`
 * value) into out, skipping keys already there: explicit keys win over
 * merged ones, and earlier sources win over later ones.
 */
static int merge_from(struct builder *b, struct pipe_strmap *seen, struct ypair *out, size_t *n,
		      const struct ynode *src, bool in_list)
{
	if (src->kind == Y_SEQ && !in_list) {
		for (size_t i = 0; i < src->n; i++) {
			int rc = merge_from(b, seen, out, n, src->items[i], true);
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	if (src->kind != Y_MAP)
		return pipe_error_at(b->ctx, src->pos,
				     "merge key '<<' needs a mapping or a list of mappings, not %s",
				     pipe_node_what(src));
	for (size_t i = 0; i < src->n; i++) {
		int rc = put_pair(b, seen, out, n, src->pairs[i].key, src->pairs[i].val);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static size_t merged_size(const struct ynode *v)
{
	if (v->kind == Y_MAP)
		return v->n;
	size_t total = 0;
	if (v->kind == Y_SEQ)
		for (size_t i = 0; i < v->n; i++)
			if (v->items[i]->kind == Y_MAP)
				total += v->items[i]->n;
	return total;
}

static int close_map(struct builder *b, struct frame *f)
{
	struct ynode *m = f->node;
	size_t n_raw = f->n / 2, cap = 0;
	for (size_t i = 0; i < n_raw; i++) {
		struct ynode *k = f->items[2 * i];
		cap += is_merge_key(k) ? merged_size(f->items[2 * i + 1]) : 1;
	}
	m->pairs = pipe_arena_array(b->ctx->tmp, cap ? cap : 1, sizeof(struct ypair));
	if (!m->pairs)
		return -ENOMEM;
	struct pipe_strmap seen = {.arena = b->ctx->tmp};
	bool merges = false;
	int rc = 0;
	/* Repeated keys (a repeated `<<` too) are errors; the first one stays. */
	for (size_t i = 0; i < n_raw && rc >= 0; i++) {
		struct ynode *k = f->items[2 * i];
		if (k->kind != Y_SCALAR) {
			pipe_error_at(b->ctx, k->pos, "a mapping key must be a string, not %s",
				      pipe_node_what(k));
			continue;
		}
		long first = -1;
		rc = pipe_strmap_add(&seen, k->str, k->len, (long)i, &first);
		if (rc == 0) {
			const struct ynode *fk = f->items[2 * first];
			pipe_error_at(b->ctx, k->pos,
				      "duplicate key '%s' (first at line %d, column %d)", k->str,
				      fk->pos.line, fk->pos.col);
		}
		merges = merges || is_merge_key(k);
	}
	if (rc < 0)
		return rc;
	/* Explicit keys win over merged ones wherever they are written: reserve them first. */
	struct pipe_strmap taken = {.arena = b->ctx->tmp};
	for (size_t i = 0; merges && i < n_raw; i++) {
		struct ynode *k = f->items[2 * i];
		if (k->kind == Y_SCALAR && !is_merge_key(k) &&
		    pipe_strmap_add(&taken, k->str, k->len, -1, NULL) < 0)
			return -ENOMEM;
	}
	/* The pairs in written order, the merged ones where their `<<` is. */
	for (size_t i = 0; i < n_raw; i++) {
		struct ynode *k = f->items[2 * i], *v = f->items[2 * i + 1];
		if (k->kind != Y_SCALAR || pipe_strmap_get(&seen, k->str, k->len) != (long)i)
			continue; /* a non-string or a repeated key, reported above */
		if (is_merge_key(k)) {
			rc = merge_from(b, &taken, m->pairs, &m->n, v, false);
			if (rc == -ENOMEM)
				return rc;
			continue;
		}
		m->pairs[m->n++] = (struct ypair){k, v};
	}
	return 0;
}

static int on_end(struct builder *b)
{
	struct frame *f = &b->stack[b->depth - 1];
	struct ynode *n = f->node;
	int rc = 0;
	if (n->kind == Y_SEQ) {
		n->items = pipe_arena_array(b->ctx->tmp, f->n ? f->n : 1, sizeof(*n->items));
		if (!n->items)
			rc = -ENOMEM;
		else if (f->n)
			memcpy(n->items, f->items, f->n * sizeof(*n->items));
		n->n = f->n;
	} else {
		rc = close_map(b, f);
	}
	free(f->items);
	b->depth--;
	n->open = false;
	if (rc)
		return rc;
	return add_child(b, n, n->pos);
}

/* Line and column (in characters) of a byte offset, for reader errors that carry only an offset. */
static struct ypos offset_pos(const char *text, size_t len, size_t off)
{
	struct ypos p = {1, 1};
	for (size_t i = 0; i < off && i < len; i++) {
		if (text[i] == '\n') {
			p.line++;
			p.col = 1;
		} else if (((unsigned char)text[i] & 0xC0) != 0x80) {
			p.col++;
		}
	}
	return p;
}

static int syntax_error(struct builder *b, const yaml_parser_t *p)
{
	struct pipe_ctx *ctx = b->ctx;
	if (p->error == YAML_MEMORY_ERROR)
		return -ENOMEM;
	const char *problem = p->problem ? p->problem : "invalid YAML";
	if (p->error == YAML_READER_ERROR) {
		struct ypos pos = offset_pos(ctx->text, ctx->len, p->problem_offset);
		if (p->problem_value != -1)
			return pipe_error_at(ctx, pos,
					     "%s (byte 0x%02x); a pipeline file must be UTF-8 text",
					     problem, (unsigned)p->problem_value & 0xff);
		return pipe_error_at(ctx, pos, "%s", problem);
	}
	struct ypos pos = mark_pos(p->problem_mark);
	size_t at = p->problem_mark.index;
	bool tab = at < ctx->len && ctx->text[at] == '\t' && !strstr(problem, "tab");
	return pipe_error_at(ctx, pos, "%s%s%s%s%s", problem, p->context ? " (" : "",
			     p->context ? p->context : "", p->context ? ")" : "",
			     tab ? "; indent with spaces, not tabs" : "");
}

static int on_event(struct builder *b, const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++b->documents > 1)
			return pipe_error_at(b->ctx, mark_pos(ev->start_mark),
					     "a pipeline file holds one YAML document; "
					     "remove this second one or the '---' before it");
		return 0;
	case YAML_SCALAR_EVENT:
		return on_scalar(b, ev);
	case YAML_ALIAS_EVENT:
		return on_alias(b, ev);
	case YAML_SEQUENCE_START_EVENT:
		return on_start(b, ev, Y_SEQ);
	case YAML_MAPPING_START_EVENT:
		return on_start(b, ev, Y_MAP);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return b->depth ? on_end(b) : -EINVAL;
	default:
		return 0;
	}
}

int pipe_tree_parse(struct pipe_ctx *ctx, struct ynode **root)
{
	struct builder b = {.ctx = ctx, .anchors = {.arena = ctx->tmp}};
	yaml_parser_t parser;
	yaml_event_t ev;
	int rc = 0;
	*root = NULL;
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)ctx->text, ctx->len);
	for (;;) {
		if (!yaml_parser_parse(&parser, &ev)) {
			rc = syntax_error(&b, &parser);
			break;
		}
		bool end = ev.type == YAML_STREAM_END_EVENT;
		rc = on_event(&b, &ev);
		yaml_event_delete(&ev);
		if (rc || end)
			break;
	}
	yaml_parser_delete(&parser);
	while (b.depth)
		free(b.stack[--b.depth].items);
	free(b.stack);
	free(b.anchor_nodes);
	if (rc)
		return rc;
	*root = b.root;
	return 0;
}
