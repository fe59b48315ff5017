/* SHA-256 through OpenSSL's EVP interface. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <stdio.h>
#include <unistd.h>

struct sha256_ctx {
	EVP_MD_CTX *md;
};

struct sha256_ctx *sha256_new(void)
{
	struct sha256_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return NULL;
	ctx->md = EVP_MD_CTX_new();
	if (!ctx->md || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx->md);
		free(ctx);
		return NULL;
	}
	return ctx;
}

void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len)
{
	EVP_DigestUpdate(ctx->md, data, len);
}

void sha256_finish(struct sha256_ctx *ctx, char hex[SHA256_HEX_LEN + 1])
{
	unsigned char digest[32];
	unsigned int n = 0;
	EVP_DigestFinal_ex(ctx->md, digest, &n);
	for (unsigned int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	EVP_MD_CTX_free(ctx->md);
	free(ctx);
}

int sha256_update_file(struct sha256_ctx *ctx, const char *path, struct vmci_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vmci_err_errno(err, errno, "cannot open %s", path);
	static __thread unsigned char chunk[1 << 16];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return vmci_err_errno(err, e, "cannot read %s", path);
		}
		if (n == 0)
			break;
		sha256_update(ctx, chunk, (size_t)n);
	}
	close(fd);
	return 0;
}

int sha256_file(const char *path, char hex[SHA256_HEX_LEN + 1], struct vmci_err *err)
{
	struct sha256_ctx *ctx = sha256_new();
	if (!ctx)
		return vmci_err_set(err, ENOMEM, "out of memory hashing %s", path);
	int rc = sha256_update_file(ctx, path, err);
	sha256_finish(ctx, hex);
	return rc;
}
