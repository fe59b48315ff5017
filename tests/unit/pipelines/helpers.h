/*
 * Helpers shared by the pipelines tests: load a pipeline from a string and
 * get either the run or its errors as the text `vmci validate` prints
 * (file name "t.yml").
 */
#ifndef VMCI_TEST_PIPELINES_HELPERS_H
#define VMCI_TEST_PIPELINES_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pipelines/pipelines.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every error of a failed load, one formatted line each; malloc'd. */
static inline char *format_errors(const struct pipe_errors *errors)
{
	struct buf out = {0};
	for (size_t i = 0; i < errors->len; i++)
		assert_int_equal(pipe_error_format(errors, i, &out), 0);
	char *s = strdup(buf_cstr(&out));
	buf_free(&out);
	return s;
}

/* Loads yaml with opts (file "t.yml" unless set), expecting success. */
static inline struct pipe_run *load_ok_opts(const char *yaml, struct pipe_load_opts opts)
{
	struct pipe_errors errors = {0};
	struct pipe_run *run = NULL;
	if (!opts.file)
		opts.file = "t.yml";
	int rc = pipe_load(yaml, strlen(yaml), &opts, &run, &errors);
	if (rc) {
		char *text = format_errors(&errors);
		print_error("unexpected errors (%d):\n%s", rc, text);
		free(text);
	}
	assert_int_equal(rc, 0);
	assert_non_null(run);
	assert_int_equal(errors.len, 0);
	pipe_errors_free(&errors);
	return run;
}

static inline struct pipe_run *load_ok(const char *yaml)
{
	return load_ok_opts(yaml, (struct pipe_load_opts){0});
}

/* Loads yaml expecting it to be refused; returns the errors as printed (malloc'd). */
static inline char *errors_opts(const char *yaml, size_t len, struct pipe_load_opts opts)
{
	struct pipe_errors errors = {0};
	struct pipe_run *run = NULL;
	if (!opts.file)
		opts.file = "t.yml";
	int rc = pipe_load(yaml, len, &opts, &run, &errors);
	assert_int_equal(rc, -EINVAL);
	assert_null(run);
	assert_true(errors.len > 0);
	char *text = format_errors(&errors);
	pipe_errors_free(&errors);
	return text;
}

static inline char *errors_of(const char *yaml)
{
	return errors_opts(yaml, strlen(yaml), (struct pipe_load_opts){0});
}

/* Asserts that yaml is refused with exactly the errors `expected` (lines of "t.yml:L:C: error:
 * ..."). */
#define assert_errors(yaml, expected)                                                              \
	do {                                                                                       \
		char *got_ = errors_of(yaml);                                                      \
		assert_string_equal(got_, expected);                                               \
		free(got_);                                                                        \
	} while (0)

/* The value of key in vars, or NULL. */
static inline const char *var(const struct pipe_var *vars, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(vars[i].key, key))
			return vars[i].value;
	return NULL;
}

/* A minimal valid job body, to append after "jobs:\n  NAME:\n". */
#define JOB_BODY "    image: debian-12\n    steps:\n      - run: make\n"

#endif
