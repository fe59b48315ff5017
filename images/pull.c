/*
 * img_pull: an image by URL, with libcurl.
 *
 * The bytes go to tmp/pull-<sha256>.part, flock'd while a pull writes it.
 * A pull that finds the file resumes it with a Range request (RFC 9110
 * 14.2): a 206 appends, a 200 means the server ignored the range and the
 * file starts over, a 416 means it was already whole. Only a file whose
 * sha256 is the one asked for is handed to img_import; a mismatch deletes
 * it. gc removes partial files no pull holds.
 *
 * A pull never takes more than its limit (IMG_PULL_MAX_BYTES unless told
 * otherwise) nor more than the size the server announced (Content-Length,
 * or the total of Content-Range): a server that streams without end
 * would otherwise fill the disk. A size over the limit is refused before
 * any byte is written; a download that grows past either is stopped and
 * deleted, since resuming it could only grow it further.
 */
#include "images/internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Why the body callback stopped a transfer. */
enum dl_stop {
	DL_GOING,
	DL_WRITE,     /* writing the file failed: write_errno */
	DL_RANGE,     /* a 206 for a range we did not ask for */
	DL_TOO_BIG,   /* the announced size is over the limit */
	DL_LIMIT,     /* the body grew past the limit */
	DL_OVERSIZED, /* the body grew past the announced size */
};

/* One transfer into the partial file. */
struct dl {
	CURL *curl;
	const char *url;
	int fd;
	long long offset;      /* bytes in the file before this request */
	long long written;     /* bytes written by this request */
	long long total;       /* the whole file's size; -1 unknown */
	long long range_start; /* from Content-Range; -1 none */
	long long max;	       /* the most bytes the whole file may have */
	bool started;	       /* the first body bytes were seen */
	enum dl_stop stop;
	int write_errno;  /* when stop is DL_WRITE */
	char status[128]; /* the last status line, "HTTP/1.1 404 Not Found" */
	img_progress_fn progress;
	void *ctx;
};

static size_t on_header(char *data, size_t size, size_t n, void *userdata)
{
	struct dl *d = userdata;
	size_t len = size * n;
	char line[256];
	snprintf(line, sizeof(line), "%.*s", (int)(len < sizeof(line) ? len : sizeof(line) - 1),
		 data);
	line[strcspn(line, "\r\n")] = 0;
	long long a, b, total;
	if (!strncmp(line, "HTTP/", 5)) {
		/* A new response (after a redirect, or a 100 Continue): forget the last one. */
		snprintf(d->status, sizeof(d->status), "%.127s", line);
		d->range_start = -1;
	} else if (!strncasecmp(line, "Content-Range:", 14) &&
		   sscanf(line + 14, " bytes %lld-%lld/%lld", &a, &b, &total) == 3) {
		d->range_start = a;
		d->total = total;
	}
	return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
	struct dl *d = userdata;
	size_t len = size * n;
	long code = 0;
	curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &code);
	if (code < 200 || code > 299)
		return len; /* an error page: the status says it all */
	if (!d->started) {
		d->started = true;
		if (code != 206 && d->offset > 0) {
			log_info("pull: %s ignored the range request, starting over", d->url);
			if (ftruncate(d->fd, 0) != 0) {
				d->stop = DL_WRITE;
				d->write_errno = errno;
				return 0;
			}
			d->offset = 0;
		} else if (code == 206 && d->range_start != d->offset) {
			d->stop = DL_RANGE;
			return 0;
		}
		if (code != 206) {
			curl_off_t length = -1;
			curl_easy_getinfo(d->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
			d->total = length >= 0 ? (long long)length : -1;
		}
		if (d->total > d->max) {
			d->stop = DL_TOO_BIG;
			return 0;
		}
	}
	long long end = d->offset + d->written + (long long)len;
	if (end > d->max || (d->total >= 0 && end > d->total)) {
		d->stop = end > d->max ? DL_LIMIT : DL_OVERSIZED;
		return 0;
	}
	for (size_t done = 0; done < len;) {
		ssize_t w = pwrite(d->fd, data + done, len - done, d->offset + d->written);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			d->stop = DL_WRITE;
			d->write_errno = w < 0 ? errno : EIO;
			return 0;
		}
		done += (size_t)w;
		d->written += w;
	}
	if (d->progress)
		d->progress(d->ctx, "downloading", d->offset + d->written,
			    d->total > 0 ? d->total : 0);
	return len;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void human(long long bytes, char *out, size_t size)
{
	if (bytes >= 1LL << 30)
		snprintf(out, size, "%.1f GiB", (double)bytes / (1LL << 30));
	else if (bytes >= 1 << 20)
		snprintf(out, size, "%.1f MiB", (double)bytes / (1 << 20));
	else
		snprintf(out, size, "%lld bytes", bytes);
}

/* What the body callback's stop means, for the user. */
static int stop_error(const struct dl *d, const char *h, const char *part, struct vmci_err *err)
{
	char limit[32], size[32];
	human(d->max, limit, sizeof(limit));
	human(d->total, size, sizeof(size));
	switch (d->stop) {
	case DL_RANGE:
		return vmci_err_set(err, EPROTO,
				    "%s answered a range request with another range; try again, "
				    "or delete %s to start over",
				    h, part);
	case DL_TOO_BIG:
		return vmci_err_set(err, EFBIG,
				    "%s is %s, more than the limit of %s: nothing was downloaded "
				    "(if the size is right, pull with --max-size %lld)",
				    d->url, size, limit, d->total);
	case DL_LIMIT:
		return vmci_err_set(err, EFBIG,
				    "the download of %s went past the limit of %s and was stopped "
				    "and deleted (if the file is that big, pull with a larger "
				    "--max-size)",
				    d->url, limit);
	case DL_OVERSIZED:
		return vmci_err_set(err, EPROTO,
				    "%s sent more than the %lld bytes it announced for %s; the "
				    "download was stopped and deleted",
				    h, d->total, d->url);
	default:
		return vmci_err_errno(err, d->write_errno ? d->write_errno : EIO,
				      "cannot write the download %s", part);
	}
}

/* Turns what curl and the server said into a message a user can act on. */
static int transfer_error(struct dl *d, CURLcode res, const char *curl_msg, const char *part,
			  struct vmci_err *err)
{
	char *host = NULL;
	CURLU *u = curl_url();
	if (u && curl_url_set(u, CURLUPART_URL, d->url, 0) == CURLUE_OK)
		curl_url_get(u, CURLUPART_HOST, &host, 0);
	const char *h = host ? host : d->url;
	const char *why = curl_msg[0] ? curl_msg : curl_easy_strerror(res);
	char have[32], total[48] = "";
	struct stat st;
	human(fstat(d->fd, &st) == 0 ? (long long)st.st_size : d->offset + d->written, have,
	      sizeof(have));
	if (d->total > 0) {
		char t[32];
		human(d->total, t, sizeof(t));
		snprintf(total, sizeof(total), " of %s", t);
	}
	int rc;
	switch (res) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		rc = vmci_err_set(err, EHOSTUNREACH,
				  "cannot resolve the host '%s' of %s (check the URL and the "
				  "network): %s",
				  h, d->url, why);
		break;
	case CURLE_COULDNT_CONNECT:
		rc = vmci_err_set(err, ECONNREFUSED,
				  "cannot connect to %s for %s (is the server up? check the URL "
				  "and the network): %s",
				  h, d->url, why);
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		rc = vmci_err_set(err, EINVAL,
				  "cannot pull '%s': only http:// and https:// URLs "
				  "are supported (%s)",
				  d->url, why);
		break;
	case CURLE_WRITE_ERROR:
		rc = stop_error(d, h, part, err);
		break;
	case CURLE_TOO_MANY_REDIRECTS:
		rc = vmci_err_set(err, ELOOP,
				  "GET %s was redirected too many times (a redirect loop?): %s; "
				  "check the URL",
				  d->url, why);
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CACERT_BADFILE:
		rc = vmci_err_set(err, EPROTO, "TLS with %s failed for %s: %s", h, d->url, why);
		break;
	default:
		/* A dropped or stalled connection: what came so far is kept for the next pull. */
		rc = vmci_err_set(err, ECONNRESET,
				  "the download of %s was cut off after %s%s (%s); what was "
				  "received is kept in %s: run the same pull again to resume it",
				  d->url, have, total, why, part);
		break;
	}
	curl_free(host);
	curl_url_cleanup(u);
	return rc;
}

/*
 * One GET of url into fd from its current end. Returns 0 when the file is
 * whole, an HTTP status >= 300 (err set) for the caller to judge, 200 when
 * the server ignored the range (start over), or a negative code.
 */
static int fetch(const char *url, int fd, const char *part, long long max, img_progress_fn progress,
		 void *ctx, struct vmci_err *err)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return vmci_err_errno(err, errno, "cannot stat %s", part);
	struct dl d = {.url = url,
		       .fd = fd,
		       .offset = st.st_size,
		       .total = -1,
		       .range_start = -1,
		       .max = max,
		       .progress = progress,
		       .ctx = ctx};
	if (d.offset > max) {
		/* Left by a pull with a larger limit: it can only grow. */
		if (ftruncate(fd, 0) != 0)
			return vmci_err_errno(err, errno, "cannot truncate %s", part);
		d.stop = DL_LIMIT;
		return stop_error(&d, url, part, err);
	}
	char curl_msg[CURL_ERROR_SIZE] = "";
	d.curl = curl_easy_init();
	if (!d.curl)
		return vmci_err_set(err, ENOMEM, "cannot start libcurl");
	curl_easy_setopt(d.curl, CURLOPT_URL, url);
	curl_easy_setopt(d.curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(d.curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(d.curl, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(d.curl, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(d.curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(d.curl, CURLOPT_USERAGENT, "vmci");
	curl_easy_setopt(d.curl, CURLOPT_CONNECTTIMEOUT, 30L);
	/* A server that stops sending for a minute counts as a dropped connection. */
	curl_easy_setopt(d.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(d.curl, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(d.curl, CURLOPT_ERRORBUFFER, curl_msg);
	curl_easy_setopt(d.curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(d.curl, CURLOPT_HEADERDATA, &d);
	curl_easy_setopt(d.curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(d.curl, CURLOPT_WRITEDATA, &d);
	if (d.offset > 0) {
		log_info("pull: resuming %s at byte %lld", url, d.offset);
		curl_easy_setopt(d.curl, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)d.offset);
	}
	CURLcode res = curl_easy_perform(d.curl);
	long code = 0;
	curl_easy_getinfo(d.curl, CURLINFO_RESPONSE_CODE, &code);
	int rc = 0;
	if (code >= 300 && (res == CURLE_OK || res == CURLE_PARTIAL_FILE))
		rc = (int)code; /* the caller decides what a status means */
	else if (res == CURLE_RANGE_ERROR && d.offset > 0)
		rc = 200; /* the whole file came instead of the range: start over */
	else if (res != CURLE_OK)
		rc = transfer_error(&d, res, curl_msg, part, err);
	else if (d.total > 0 && d.offset + d.written != d.total)
		rc = transfer_error(&d, CURLE_PARTIAL_FILE, "", part, err);
	/* Nothing of a file over the limit, or of a server that lies about sizes, is kept. */
	if (d.stop == DL_TOO_BIG || d.stop == DL_LIMIT || d.stop == DL_OVERSIZED)
		if (ftruncate(fd, 0) != 0)
			log_warn("cannot truncate %s: %s", part, strerror(errno));
	if (rc >= 300) {
		char status[160];
		snprintf(status, sizeof(status), "%s", d.status[0] ? d.status : "");
		char *reason = strchr(status, ' ') ? strchr(strchr(status, ' ') + 1, ' ') : NULL;
		vmci_err_set(err, rc == 404 ? ENOENT : EIO,
			     "GET %s returned HTTP %d%s%s (check the URL)", url, rc,
			     reason ? " " : "", reason ? reason + 1 : "");
	}
	curl_easy_cleanup(d.curl);
	return rc;
}

/* Opens and locks the partial file; another pull of the same bytes makes this fail. */
static int open_partial(const char *part, const char *sha, int *fd, struct vmci_err *err)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		*fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (*fd < 0)
			return vmci_err_errno(err, errno, "cannot create %s", part);
		if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
			int e = errno;
			close(*fd);
			*fd = -1;
			if (e == EWOULDBLOCK)
				return vmci_err_set(err, EBUSY,
						    "another `vmci image pull` is downloading "
						    "sha256:%.12s into %s (wait for it to finish)",
						    sha, part);
			return vmci_err_errno(err, e, "cannot lock %s", part);
		}
		/* gc may have removed an old partial between our open and our lock. */
		struct stat a, b;
		if (fstat(*fd, &a) == 0 && stat(part, &b) == 0 && a.st_ino == b.st_ino)
			return 0;
		close(*fd);
	}
	*fd = -1;
	return vmci_err_set(err, EAGAIN, "cannot hold %s (try again)", part);
}

/* The file name a download keeps (what the URL's path ends with), for img_import's sake. */
static void file_name(const char *url, char *out, size_t size)
{
	size_t end = strcspn(url, "?#");
	const char *start = url;
	for (size_t i = 0; i < end; i++)
		if (url[i] == '/')
			start = url + i + 1;
	size_t n = 0;
	for (const char *p = start; p < url + end && n + 1 < size; p++)
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("._-+", *p))
			out[n++] = *p;
	out[n] = 0;
	if (!n || out[0] == '.')
		snprintf(out, size, "download");
}

static int publish_import(void *ctx, const char *name, const char *file, img_progress_fn progress,
			  void *pctx, struct vmci_err *err)
{
	return img_import(name, file, progress, pctx, err);
}

int img_pull_with(const char *url, const char *sha256_hex, const char *name, long long max_bytes,
		  img_publish_fn publish, void *publish_ctx, img_progress_fn progress, void *ctx,
		  struct vmci_err *err)
{
	long long max = max_bytes > 0 ? max_bytes : IMG_PULL_MAX_BYTES;
	char sha[SHA256_HEX_LEN + 1] = "", tmp[PATH_MAX], part[PATH_MAX];
	const char *hex = strncmp(sha256_hex, "sha256:", 7) ? sha256_hex : sha256_hex + 7;
	for (size_t i = 0; i < SHA256_HEX_LEN && hex[i]; i++)
		sha[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] - 'A' + 'a' : hex[i]);
	sha[SHA256_HEX_LEN] = 0;
	if (strlen(hex) != SHA256_HEX_LEN || strspn(sha, "0123456789abcdef") != SHA256_HEX_LEN)
		return vmci_err_set(err, EINVAL,
				    "'%s' is not a sha256 (expected 64 hex digits, as printed by "
				    "sha256sum)",
				    sha256_hex);
	int rc = img_name_check(name, err);
	if (!rc)
		rc = img_store_dir(tmp, sizeof(tmp), "tmp", err);
	if (!rc && fs_path(part, sizeof(part), "%s/pull-%s.part", tmp, sha))
		rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", tmp);
	pthread_once(&curl_once, curl_init);
	if (!rc && curl_init_result != CURLE_OK)
		rc = vmci_err_set(err, EIO, "cannot initialize libcurl: %s",
				  curl_easy_strerror(curl_init_result));
	int fd = -1;
	if (!rc)
		rc = open_partial(part, sha, &fd, err);
	if (rc)
		return rc;

	char got[SHA256_HEX_LEN + 1] = "";
	for (int attempt = 0; attempt < 3; attempt++) {
		rc = fetch(url, fd, part, max, progress, ctx, err);
		if (rc == 416) {
			/* Nothing past our end: either the file is whole, or it is not this one. */
			if (sha256_file(part, got, err) == 0 && !strcmp(got, sha)) {
				rc = 0;
				break;
			}
			got[0] = 0;
			log_info("pull: %s does not match %s, starting over", part, url);
		} else if (rc == 200) {
			log_info("pull: %s does not resume downloads, starting over", url);
		} else {
			if (rc > 0)
				rc = -(err && err->code ? err->code : EIO);
			break;
		}
		if (ftruncate(fd, 0) != 0) {
			rc = vmci_err_errno(err, errno, "cannot truncate %s", part);
			break;
		}
	}
	if (rc > 0)
		rc = vmci_err_set(err, EIO, "GET %s keeps failing with HTTP %d (check the URL)",
				  url, rc);
	struct stat st;
	if (rc && fstat(fd, &st) == 0 && st.st_size == 0)
		unlink(part); /* nothing worth resuming */
	if (!rc && !got[0])
		rc = sha256_file(part, got, err);
	if (!rc && strcmp(got, sha)) {
		unlink(part);
		rc = vmci_err_set(err, EBADMSG,
				  "the download of %s has the wrong sha256: expected %s, got %s; "
				  "it was deleted and nothing was published (check the URL and "
				  "the checksum)",
				  url, sha, got);
	}
	if (rc) {
		close(fd);
		vmci_err_wrap(err, "cannot pull image '%s'", name);
		return rc;
	}

	/* Verified: hand it over under the URL's file name, in a scratch directory of ours. */
	struct img_scratch s = {.fd = -1};
	char file[128], path[PATH_MAX];
	file_name(url, file, sizeof(file));
	rc = img_scratch_new(tmp, "pull", &s, err);
	if (!rc && fs_path(path, sizeof(path), "%s/%s", s.path, file))
		rc = vmci_err_set(err, ENAMETOOLONG, "path too long under %s", s.path);
	if (!rc && rename(part, path) != 0)
		rc = vmci_err_errno(err, errno, "cannot move %s to %s", part, path);
	if (!rc) {
		if (progress)
			progress(ctx, "importing", 0, 0);
		rc = publish(publish_ctx, name, path, progress, ctx, err);
		/* Kept whole for the next pull, which finds it complete and skips the download. */
		if (rc && rename(path, part) != 0)
			log_warn("cannot keep %s as %s: %s", path, part, strerror(errno));
	}
	img_scratch_drop(&s);
	close(fd);
	if (rc)
		vmci_err_wrap(err, "cannot pull image '%s'", name);
	return rc;
}

int img_pull(const char *url, const char *sha256_hex, const char *name, long long max_bytes,
	     img_progress_fn progress, void *ctx, struct vmci_err *err)
{
	return img_pull_with(url, sha256_hex, name, max_bytes, publish_import, NULL, progress, ctx,
			     err);
}
