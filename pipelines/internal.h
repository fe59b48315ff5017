/*
 * pipelines, private: the pieces pipe_load() joins, in the order it runs
 * them.
 *
 *   yaml_tree.c  libyaml events -> a node tree with positions; anchors,
 *                aliases and merge keys resolved, duplicate keys found
 *   node.c       typed reads of nodes (string, bool, int) with errors
 *   validate.c   the top level: name, on, env, jobs -> struct pipe_spec
 *   job.c        one job and its steps, resources, strategy
 *   expr.c       ${{ ... }} templates: checked once, rendered per job
 *   matrix.c     a matrix as written: keys, values, include, exclude
 *   combos.c     its combinations: counted without making them, then made
 *   graph.c      needs: names resolved, cycles found
 *   expand.c     the checked spec -> the pipe_run the runner reads
 *   cron.c, errors.c, strmap.c, arena.c: helpers (durations and sizes
 *                are common's parse_duration and parse_size)
 *
 * Everything before expand.c allocates from ctx->tmp, freed when
 * pipe_load() returns; the run has its own arena.
 */
#ifndef VMCI_PIPELINES_INTERNAL_H
#define VMCI_PIPELINES_INTERNAL_H

#include "pipelines/pipelines.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A document may not grow past this many nodes when aliases are expanded. */
#define PIPE_MAX_NODES 1000000
#define PIPE_MAX_DEPTH 512
/* Past this, the error list ends with one saying so. */
#define PIPE_MAX_ERRORS 10000
/* Steps a matrix count may take before it gives up (pathological excludes). */
#define PIPE_MATRIX_BUDGET 20000000
/* Candidate names compared for did-you-mean suggestions in one load. */
#define PIPE_SUGGEST_BUDGET 200000
/* The expanded run may not take more memory than this. */
#define PIPE_MAX_RUN_BYTES (256u << 20)

/* ---- arena.c ---------------------------------------------------------- */

/* All return NULL when out of memory; memory comes zeroed. */
struct pipe_arena *pipe_arena_new(void);
void pipe_arena_free(struct pipe_arena *a);
void *pipe_arena_alloc(struct pipe_arena *a, size_t size);
void *pipe_arena_array(struct pipe_arena *a, size_t n, size_t size);
char *pipe_arena_strndup(struct pipe_arena *a, const char *s, size_t n);
char *pipe_arena_strdup(struct pipe_arena *a, const char *s);
char *pipe_arena_printf(struct pipe_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
size_t pipe_arena_total(const struct pipe_arena *a);
/* True once an allocation has failed: pipe_load() then returns -ENOMEM. */
bool pipe_arena_failed(const struct pipe_arena *a);

/* ---- strmap.c: string -> long, in an arena --------------------------- */

struct pipe_strmap {
	struct pipe_arena *arena;
	struct pipe_strmap_slot *slots;
	size_t cap;
	size_t len;
};

/*
 * Adds key (not copied: it must outlive the map) with value, unless the
 * key is there. Returns 1 when added, 0 when present (*old set to its
 * value if old is not NULL), -ENOMEM.
 */
int pipe_strmap_add(struct pipe_strmap *m, const char *key, size_t klen, long value, long *old);
/* The value of key, or -1. */
long pipe_strmap_get(const struct pipe_strmap *m, const char *key, size_t klen);

/* ---- the load context and errors (errors.c) -------------------------- */

struct ypos {
	int line, col; /* 1-based, 0 for "no position" */
};

struct pipe_ctx {
	struct pipe_arena *tmp;	 /* the tree and the spec; freed by pipe_load() */
	struct pipe_arena *keep; /* strings the run will point to; becomes the run's */
	struct pipe_errors *errors;
	const char *text; /* the source, for positions inside block scalars */
	size_t len;
	size_t max_jobs;
	const struct pipe_vars *vars;
	bool oom;	       /* an allocation failed: pipe_load() returns -ENOMEM */
	size_t n_dropped;      /* errors past PIPE_MAX_ERRORS */
	size_t suggest_budget; /* candidates left to compare for did-you-mean */
};

/* A formatted string in ctx->tmp, for message parts; "" (and ctx->oom) when out of memory. */
const char *pipe_fmt(struct pipe_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Records an error at pos. Returns -EINVAL so callers can `return pipe_error_at(...)`. */
int pipe_error_at(struct pipe_ctx *ctx, struct ypos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * Sorts the errors by position (stable), drops exact repeats (an error in
 * an anchored node is found once per alias) and notes dropped errors last.
 */
void pipe_errors_finish(struct pipe_ctx *ctx);
/*
 * The candidate nearest to word by edit distance (with transpositions), or
 * NULL if none is close. Each candidate compared spends ctx->suggest_budget,
 * so a file of thousands of misspellings against thousands of names stays
 * fast: past the budget, errors come without suggestions.
 */
const char *pipe_suggest(struct pipe_ctx *ctx, const char *word, const char *const *candidates,
			 size_t n);
/* " (did you mean 'x'?)" or "", for appending to a message. */
const char *pipe_did_you_mean(struct pipe_ctx *ctx, const char *word, const char *const *candidates,
			      size_t n);

/* ---- yaml_tree.c --------------------------------------------------------- */

enum ykind { Y_SCALAR, Y_SEQ, Y_MAP };
enum ystyle { YS_PLAIN, YS_SINGLE, YS_DOUBLE, YS_LITERAL, YS_FOLDED };

struct ynode;
struct ypair {
	struct ynode *key; /* always a scalar */
	struct ynode *val;
};

/*
 * A YAML node. Aliases share the anchored node, so the tree is a DAG;
 * `weight` counts the nodes it would have with every alias copied, which
 * bounds every walk over it.
 */
struct ynode {
	enum ykind kind;
	enum ystyle style; /* scalars */
	struct ypos pos;   /* the start: a scalar's first character or indicator */
	int end_line;	   /* 1-based line of the end mark */
	size_t start, end; /* byte offsets of the node's source text */
	const char *str;   /* scalars: the value, NUL-terminated */
	size_t len;
	struct ynode **items; /* sequences */
	struct ypair *pairs;  /* mappings, merge keys applied, duplicates dropped */
	size_t n;
	uint64_t weight;
	bool open; /* still being built: an alias to it would recurse */
};

/*
 * Builds the tree of the single document in ctx->text. Returns 0 with
 * *root set (NULL for an empty document), -EINVAL after recording the
 * error (syntax, duplicate key, bad alias or merge, too many nodes), or
 * -ENOMEM. Duplicate keys are recorded but do not stop the parse.
 */
int pipe_tree_parse(struct pipe_ctx *ctx, struct ynode **root);

/* ---- node.c -------------------------------------------------------------- */

/* "a string", "a number", "a boolean", "null", "a list", "a mapping" */
const char *pipe_node_what(const struct ynode *n);
bool pipe_node_is_null(const struct ynode *n);
/* The value of key in map, or NULL. */
struct ynode *pipe_map_get(const struct ynode *map, const char *key);
/* The key node of key in map, or NULL. */
struct ynode *pipe_map_key(const struct ynode *map, const char *key);
/*
 * Records "unknown key 'k' in WHERE (did you mean 'x'?)" for every key of
 * map not in known. Returns the number of unknown keys.
 */
int pipe_check_keys(struct pipe_ctx *ctx, const struct ynode *map, const char *const *known,
		    size_t n_known, const char *where);
/* True for a key starting with "x-": a place for anchors, ignored (as in Compose files). */
bool pipe_is_extension_key(const struct ynode *key);
/*
 * Typed reads. Each records "WHAT must be ..., not ..." at the node and
 * returns -EINVAL when the node has the wrong type or value; 0 otherwise.
 * pipe_node_string refuses null, and expressions (${{ }}) as they are
 * expanded only in image, env, run and name; it returns a copy in
 * ctx->keep.
 */
int pipe_node_string(struct pipe_ctx *ctx, const struct ynode *n, const char *what,
		     const char **out);
int pipe_node_bool(struct pipe_ctx *ctx, const struct ynode *n, const char *what, bool *out);
int pipe_node_int(struct pipe_ctx *ctx, const struct ynode *n, const char *what, int min, int max,
		  int *out);
int pipe_node_duration(struct pipe_ctx *ctx, const struct ynode *n, const char *what,
		       int64_t *out_ms);
int pipe_node_size_mb(struct pipe_ctx *ctx, const struct ynode *n, const char *what,
		      int64_t *out_mb);
/* Checks a mapping or sequence type, recording "WHAT must be EXPECTED, not ..." */
int pipe_node_expect(struct pipe_ctx *ctx, const struct ynode *n, enum ykind kind, const char *what,
		     const char *expected);
/* The position of byte offset off inside scalar n's value (the scalar's start when unknown). */
struct ypos pipe_scalar_pos(const struct pipe_ctx *ctx, const struct ynode *n, size_t off);
/* True for [A-Za-z_][A-Za-z0-9_-]* (dash_ok) or [A-Za-z_][A-Za-z0-9_]*. */
bool pipe_is_ident(const char *s, size_t len, bool dash_ok);

/* ---- cron.c --------------------------------------------------------------- */

/* Checks a 5-field cron expression. 0, or -EINVAL with why[] saying what is wrong. */
int pipe_cron_check(const char *expr, char *why, size_t why_size);

/* ---- expr.c: ${{ ... }} templates ---------------------------------------- */

enum seg_kind { SEG_TEXT, SEG_MATRIX, SEG_ENV };

struct seg {
	enum seg_kind kind;
	const char *text; /* SEG_TEXT */
	size_t len;
	int index; /* SEG_MATRIX: matrix key; SEG_ENV: entry in env level `level` */
	int level; /* SEG_ENV: ENV_PIPELINE, ENV_JOB or ENV_STEP */
};

/*
 * A string with expressions, checked once. `flat` (in ctx->keep) is its
 * text when it does not depend on the matrix (vmci.* are substituted or
 * kept as written); otherwise segs are rendered per combination.
 */
struct tmpl {
	const char *flat;
	struct seg *segs;
	size_t n_segs;
};

enum { ENV_PIPELINE, ENV_JOB, ENV_STEP, ENV_LEVELS };

struct env_entry {
	const char *key;
	struct tmpl value;
	struct ypos pos;
};

struct env_spec {
	struct env_entry *items;
	size_t n;
	struct pipe_strmap index; /* key -> index into items */
};

struct matrix_spec;

/* What an expression may name where it is. */
struct expr_scope {
	const struct matrix_spec *matrix;	/* NULL: the matrix is not available here */
	const struct env_spec *env[ENV_LEVELS]; /* NULL: that level is not visible */
	const char *where;			/* "job 'build'", for messages */
	bool job_has_no_matrix;			/* for a clearer message on matrix.X */
	bool matrix_unchecked;			/* the matrix is unreadable: accept matrix.X */
};

/*
 * Checks scalar n's expressions against scope and compiles it. Returns 0,
 * or -EINVAL after recording each bad expression at its position.
 */
int pipe_tmpl_compile(struct pipe_ctx *ctx, const struct expr_scope *scope, const struct ynode *n,
		      const char *what, struct tmpl *out);

/* What a template is rendered with: one combination and the rendered env levels. */
struct render_env {
	const char *const *matrix; /* values by matrix key; NULL entries render as "" */
	const char *const *env[ENV_LEVELS];
};

/*
 * Renders t into arena a. Returns the string (t->flat itself when
 * constant), or NULL when it would be longer than limit bytes or memory
 * ran out (pipe_arena_failed tells which).
 */
const char *pipe_tmpl_render(struct pipe_arena *a, const struct tmpl *t,
			     const struct render_env *re, size_t limit);

/* ---- matrix.c, combos.c --------------------------------------------------- */

struct mx_key {
	const char *name;
	struct ypos pos;
	const char **values; /* product keys only */
	size_t n_values;
};

struct mx_assign {
	int key; /* index into keys */
	const char *value;
	int vindex; /* index into keys[key].values; -1: not among them (or an extra key) */
};

/* An include or exclude entry: assignments sorted by key. */
struct mx_rule {
	struct mx_assign *a;
	size_t n;
	struct ypos pos;
};

struct matrix_spec {
	struct mx_key *keys; /* product keys first, then keys only includes add */
	size_t n_keys;
	size_t n_product;
	struct mx_rule *excludes;
	size_t n_excludes;
	struct mx_rule *includes;
	size_t n_includes;
	struct ypos pos;
};

/*
 * Reads `strategy.matrix` of job `id`. Returns 0 with *out set, or
 * -EINVAL after recording the errors; *out is then the part that could be
 * read (its keys, for checking expressions), or NULL.
 */
int pipe_matrix_parse(struct pipe_ctx *ctx, const char *id, const struct ynode *n,
		      struct matrix_spec **out);
/* The index of matrix key name, or -1. */
int pipe_matrix_key(const struct matrix_spec *m, const char *name, size_t len);
/*
 * How many combinations the matrix makes, computed without making them:
 * *count saturates at UINT64_MAX. Returns 0, or -E2BIG when the excludes
 * interact too much to count within PIPE_MATRIX_BUDGET steps.
 */
int pipe_matrix_count(const struct matrix_spec *m, uint64_t *count);
/*
 * Makes the combinations (call only once the count is acceptable):
 * *out is an array of *n_out rows of m->n_keys values each (NULL: absent),
 * in GitHub Actions order. Returns 0, -ENOMEM, -E2BIG (budget spent) or
 * -ERANGE (more combinations than counted: a bug).
 */
int pipe_matrix_expand(struct pipe_arena *a, const struct matrix_spec *m, const char ***out,
		       size_t *n_out);

/* ---- the checked pipeline (validate.c, job.c) ---------------------------- */

struct step_spec {
	struct tmpl name;
	bool has_name;
	struct tmpl run;
	struct env_spec env;
	int64_t timeout_ms;
	bool continue_on_error;
	const char *workdir;
	struct ypos pos;
	struct ypos run_pos;
};

struct need_ref {
	const char *id;
	struct ypos pos;
	long target; /* index into spec->jobs, -1 until graph.c resolves it */
};

struct job_spec {
	const char *id;
	struct ypos pos;
	struct tmpl image;
	struct ypos image_pos;
	struct env_spec env;
	struct step_spec *steps;
	size_t n_steps;
	int64_t timeout_ms;
	int retries;
	int cpus;
	int64_t memory_mb;
	enum pipe_network network;
	const char **packages;
	size_t n_packages;
	struct pipe_place *package_places;
	int64_t log_limit; /* bytes */
	const char **artifacts;
	size_t n_artifacts;
	int64_t artifact_max_bytes;
	int artifact_max_files;
	struct need_ref *needs;
	size_t n_needs;
	bool fail_fast;
	int max_parallel;
	const char *condition;
	struct matrix_spec *matrix; /* NULL: one job */
	bool matrix_broken;	    /* matrix has errors: only its keys are usable */
	uint64_t n_combos;	    /* set by pipe_load() before expanding */
};

struct pipe_spec {
	const char *name;
	struct tmpl name_tmpl;
	bool has_name;
	bool on_push;
	const char **branches;
	size_t n_branches;
	const char **crons;
	size_t n_crons;
	struct env_spec env;
	struct job_spec *jobs;
	size_t n_jobs;
	struct ypos jobs_pos;
};

/*
 * Checks the document against the format and fills spec. Records every
 * error; returns 0 when there was none, -EINVAL otherwise (spec is then
 * partial but safe to free with the arena), -ENOMEM.
 */
int pipe_validate(struct pipe_ctx *ctx, const struct ynode *root, struct pipe_spec *spec);
/* One job: its value node `n` under key `key`. Same returns. */
int pipe_job_parse(struct pipe_ctx *ctx, const struct pipe_spec *spec, const struct ynode *key,
		   const struct ynode *n, struct job_spec *job);
/*
 * Records an error at pos unless image is an image name (vmci_name_ok);
 * a ${{ vmci.* }} kept for the run counts as a plain name. where: "job
 * 'build'". Returns 0 or -EINVAL.
 */
int pipe_image_check(struct pipe_ctx *ctx, struct ypos pos, const char *image, const char *where);
/* Records an error at pos when script is past PIPE_MAX_SCRIPT_SIZE. Returns 0 or -EINVAL. */
int pipe_script_check(struct pipe_ctx *ctx, struct ypos pos, const char *script, const char *what);
/* An `env` mapping at level with the given scope. Same returns. */
int pipe_env_parse(struct pipe_ctx *ctx, const struct ynode *n, const struct expr_scope *scope,
		   const char *where, struct env_spec *out);

/* ---- graph.c --------------------------------------------------------------- */

/* Resolves every need to a job and records unknown names and cycles. 0 or -EINVAL. */
int pipe_graph_check(struct pipe_ctx *ctx, struct pipe_spec *spec);

/* ---- expand.c -------------------------------------------------------------- */

/*
 * Builds the run from a spec without errors (counts already checked).
 * Returns 0, -EINVAL after recording why a job cannot be expanded (its
 * output would pass PIPE_MAX_RUN_BYTES, or its matrix rules are too
 * intricate), -ERANGE if the matrix count was wrong (a bug), or -ENOMEM.
 */
int pipe_expand(struct pipe_ctx *ctx, const struct pipe_spec *spec, const char *default_name,
		struct pipe_run **out);

#endif
