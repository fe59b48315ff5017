/*
 * The service's config file (runner/service/config.c): values, defaults, and errors at their place.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner/service.h"

#include <errno.h>
#include <string.h>

static int parse(const char *text, struct service_config *c, struct vmci_err *err)
{
	return service_config_parse("serve.yml", text, strlen(text), c, err);
}

static void test_every_key_is_read(void **state)
{
	struct service_config c;
	struct vmci_err err = {0};
	assert_int_equal(parse("listen: 127.0.0.1:9000\n"
			       "db: sqlite:/tmp/x.db\n"
			       "public_url: https://ci.example.org\n"
			       "public_read: true\n"
			       "host: { name: build1, capacity: 4, url: http://build1:8080 }\n"
			       "repos:\n"
			       "  - name: acme/widget\n"
			       "    url: /srv/git/widget.git\n"
			       "    forge: none\n"
			       "  - { name: other, url: https://example.org/other.git }\n",
			       &c, &err),
			 0);
	assert_string_equal(c.listen, "127.0.0.1:9000");
	assert_string_equal(c.db, "sqlite:/tmp/x.db");
	assert_string_equal(c.host, "build1");
	assert_int_equal(c.capacity, 4);
	assert_true(c.public_read);
	assert_int_equal(c.n_repos, 2);
	assert_string_equal(service_config_repo(&c, "acme/widget")->url, "/srv/git/widget.git");
	assert_non_null(service_config_repo(&c, "other"));
	assert_null(service_config_repo(&c, "nope"));
	service_config_free(&c);
}

static void test_listen_defaults_to_loopback(void **state)
{
	struct service_config c;
	struct vmci_err err = {0};
	assert_int_equal(parse("repos: []\n", &c, &err), 0);
	assert_string_equal(c.listen, "127.0.0.1:8080");
	assert_null(c.db);
	assert_false(c.public_read);
	service_config_free(&c);
}

static void test_public_read_must_be_a_boolean(void **state)
{
	struct service_config c;
	struct vmci_err err = {0};
	assert_int_equal(parse("public_read: yes please\n", &c, &err), -EINVAL);
	assert_string_equal(err.msg,
			    "serve.yml:1:14: error: public_read must be true or false, not 'yes "
			    "please'");
}

static void test_a_bad_key_is_reported_at_its_line_and_column(void **state)
{
	struct service_config c;
	struct vmci_err err = {0};
	assert_int_equal(parse("listen: 127.0.0.1:8080\nhost:\n  nmae: b1\n", &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "serve.yml:3:3: error: unknown key 'nmae'"));
	assert_non_null(strstr(err.msg, "did you mean 'name'"));
	assert_int_equal(parse("lisen: x\n", &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "serve.yml:1:1: error: unknown key 'lisen'"));
}

static void test_bad_values_are_refused(void **state)
{
	struct service_config c;
	struct vmci_err err = {0};
	assert_int_equal(parse("host: { capacity: many }\n", &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "serve.yml:1:19: error: host.capacity"));
	assert_int_equal(parse("repos: [{name: a}]\n", &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "needs a name and a url"));
	assert_int_equal(parse("repos: [{name: a, url: x}, {name: a, url: y}]\n", &c, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "listed twice"));
	assert_int_equal(parse("listen: 8080\n", &c, &err), -EINVAL);
	assert_int_equal(parse("listen: [\n", &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "serve.yml:"));
}

static void test_a_key_given_twice_is_refused(void **state)
{
	struct service_config c;
	struct vmci_err err = {0};
	assert_int_equal(parse("host: { name: a, name: b }\n", &c, &err), -EINVAL);
	assert_string_equal(err.msg, "serve.yml:1:18: error: 'name' appears twice in host");
	assert_int_equal(parse("db: sqlite:a.db\ndb: sqlite:b.db\n", &c, &err), -EINVAL);
	assert_string_equal(err.msg, "serve.yml:2:1: error: 'db' appears twice in the config");
}

static void test_an_unknown_key_lists_the_known_ones(void **state)
{
	struct service_config c;
	struct vmci_err err = {0};
	assert_int_equal(parse("lisen: x\n", &c, &err), -EINVAL);
	assert_string_equal(err.msg, "serve.yml:1:1: error: unknown key 'lisen' in the config (did "
				     "you mean 'listen'?) (known: listen, db, public_url, host, "
				     "repos, public_read)");
}

static void test_wrong_types_say_what_was_found(void **state)
{
	struct service_config c;
	struct vmci_err err = {0};
	assert_int_equal(parse("listen: [127.0.0.1:80]\n", &c, &err), -EINVAL);
	assert_string_equal(err.msg,
			    "serve.yml:1:9: error: listen must be a non-empty string, not a list");
	assert_int_equal(parse("host: { capacity: many }\n", &c, &err), -EINVAL);
	assert_string_equal(err.msg, "serve.yml:1:19: error: host.capacity must be a whole number "
				     "from 1 to 1024, not 'many'");
	assert_int_equal(parse("repos: { name: a }\n", &c, &err), -EINVAL);
	assert_string_equal(
	    err.msg, "serve.yml:1:8: error: repos must be a list of {name, url}, not a mapping");
}

static void test_a_second_document_is_refused(void **state)
{
	struct service_config c;
	struct vmci_err err = {0};
	assert_int_equal(parse("listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n", &c, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "serve.yml:3:1: error: a second YAML document"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_key_is_read),
	    cmocka_unit_test(test_listen_defaults_to_loopback),
	    cmocka_unit_test(test_public_read_must_be_a_boolean),
	    cmocka_unit_test(test_a_bad_key_is_reported_at_its_line_and_column),
	    cmocka_unit_test(test_bad_values_are_refused),
	    cmocka_unit_test(test_a_key_given_twice_is_refused),
	    cmocka_unit_test(test_an_unknown_key_lists_the_known_ones),
	    cmocka_unit_test(test_wrong_types_say_what_was_found),
	    cmocka_unit_test(test_a_second_document_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
