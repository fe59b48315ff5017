/*
 * API tokens. A token is 256 random bits; the store keeps its SHA-256
 * only (a token is not a password: nothing to slow down a guess of 256
 * bits), so a copy of the database lets nobody in.
 */
#include "runner/store/internal.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define TOKEN_PREFIX "vmci_"
#define TOKEN_BYTES  32

static bool name_ok(const char *name)
{
	size_t len = name ? strlen(name) : 0;
	return len > 0 && len <= STORE_TOKEN_NAME_MAX &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") ==
		   len;
}

static void hash_of(const char *token, char hex[SHA256_HEX_LEN + 1])
{
	struct sha256_ctx *ctx = sha256_new();
	if (!ctx) {
		hex[0] = 0;
		return;
	}
	sha256_update(ctx, token, strlen(token));
	sha256_finish(ctx, hex);
}

static int make_token(char token[STORE_TOKEN_LEN + 1], struct vmci_err *err)
{
	unsigned char raw[TOKEN_BYTES];
	size_t got = 0;
	while (got < sizeof(raw)) {
		ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
		if (n < 0 && errno != EINTR)
			return vmci_err_errno(err, errno, "token: no random bytes from the kernel");
		got += n > 0 ? (size_t)n : 0;
	}
	char *p = token + strlen(TOKEN_PREFIX);
	memcpy(token, TOKEN_PREFIX, strlen(TOKEN_PREFIX));
	for (size_t i = 0; i < sizeof(raw); i++)
		p += sprintf(p, "%02x", raw[i]);
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

int store_token_create(struct store *s, const char *name, char token[STORE_TOKEN_LEN + 1],
		       struct vmci_err *err)
{
	token[0] = 0;
	if (!name_ok(name))
		return vmci_err_set(err, EINVAL,
				    "token name '%s': use 1 to %d letters, digits, '.', '_', '@' "
				    "or '-'",
				    name ? name : "", STORE_TOKEN_NAME_MAX);
	char made[STORE_TOKEN_LEN + 1], hex[SHA256_HEX_LEN + 1];
	int rc = make_token(made, err);
	if (rc < 0)
		return rc;
	hash_of(made, hex);
	if (!hex[0]) {
		OPENSSL_cleanse(made, sizeof(made));
		return store_oom(err, "hashing a token");
	}
	store_lock(s);
	rc = db_begin(s, true, err);
	if (rc == 0) {
		int64_t changed =
		    db_exec(s, err, "INSERT INTO tokens (name, hash, created_ms) VALUES (?, ?, ?)",
			    "ssI", name, hex, store_now_ms(s));
		rc = changed < 0 ? (int)changed : 0;
		if (rc == -EEXIST)
			rc =
			    vmci_err_set(err, EEXIST,
					 "a token named '%s' exists already: pick another name, or "
					 "delete it first",
					 name);
	}
	rc = db_end(s, rc, err);
	store_unlock(s);
	/* The plain text leaves only once the hash is safely stored. */
	if (rc == 0)
		memcpy(token, made, sizeof(made));
	OPENSSL_cleanse(made, sizeof(made));
	return rc;
}

static int verify_tx(struct store *s, const char *hex, char name[STORE_TOKEN_NAME_MAX + 1],
		     struct vmci_err *err)
{
	struct store_stmt *st;
	int rc = db_query(s, &st, err, "SELECT name, hash FROM tokens", "");
	if (rc < 0)
		return rc;
	int found = 0;
	/* Every row is compared, whole, whether or not one matched already. */
	while ((rc = db_step(s, st, err)) == 1) {
		const char *stored = col_text(s, st, 1);
		char padded[SHA256_HEX_LEN + 1] = {0};
		if (stored)
			snprintf(padded, sizeof(padded), "%s", stored);
		int same = CRYPTO_memcmp(padded, hex, SHA256_HEX_LEN) == 0;
		if (same && name)
			snprintf(name, STORE_TOKEN_NAME_MAX + 1, "%s", col_text(s, st, 0));
		found |= same;
	}
	db_done(s, st);
	return rc < 0 ? rc : found;
}

int store_token_verify(struct store *s, const char *token, char name[STORE_TOKEN_NAME_MAX + 1],
		       struct vmci_err *err)
{
	if (name)
		name[0] = 0;
	if (!token || strlen(token) > 4096)
		return 0;
	char hex[SHA256_HEX_LEN + 1];
	hash_of(token, hex);
	if (!hex[0])
		return store_oom(err, "hashing a token");
	store_lock(s);
	int rc = db_begin(s, false, err);
	if (rc == 0)
		rc = verify_tx(s, hex, name, err);
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}

int store_token_delete(struct store *s, const char *name, struct vmci_err *err)
{
	store_lock(s);
	int rc = db_begin(s, true, err);
	if (rc == 0) {
		int64_t changed = db_exec(s, err, "DELETE FROM tokens WHERE name = ?", "s", name);
		rc = changed < 0 ? (int)changed : 0;
		if (changed == 0)
			rc = vmci_err_set(err, ENOENT, "no token named '%s'", name ? name : "");
	}
	rc = db_end(s, rc, err);
	store_unlock(s);
	return rc;
}
