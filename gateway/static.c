#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"
#include "gateway.h"
#include "response.h"
#include "log.h"
#include "query.h"

/* the router's 404: a refused path looks like any unknown one */
#define STATIC_NOT_FOUND "no such path; streams are at /api/v1/events"

/* One GET on its way through the thread pool. */
struct static_read {
	uv_work_t work;
	struct gw *gw;
	struct gw_slot *slot;
	bool close;        /* the request asked to close after the answer */
	const char *dir;   /* --static-dir */
	int64_t max_bytes; /* --static-max-bytes */
	/* set by the pool thread */
	int status;        /* 200, 404, or 503 out of memory */
	bool too_large;    /* 404 because of max_bytes */
	char *data;
	size_t len;
	char rel[];        /* the decoded path, from its leading '/' */
};

static const char *static_content_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
		{ ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },   { ".json", "application/json" },
		{ ".svg", "image/svg+xml" },             { ".png", "image/png" },
		{ ".ico", "image/x-icon" },              { ".txt", "text/plain; charset=utf-8" },
	};
	const char *dot = strrchr(path, '.');

	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

/* True for %2f or %5c (any case) at raw[i]: an encoded separator. */
static bool static_encoded_separator(const char *raw, size_t len, size_t i)
{
	return raw[i] == '%' && i + 2 < len &&
	       ((raw[i + 1] == '2' && (raw[i + 2] == 'f' || raw[i + 2] == 'F')) ||
		(raw[i + 1] == '5' && (raw[i + 2] == 'c' || raw[i + 2] == 'C')));
}

/*
 * Decodes raw[0..len) into rel as a path below the folder: '/'-separated
 * names, none empty, "." or "..", without NUL, '\' or control bytes; a
 * trailing '/' becomes "/index.html". Returns false for anything else.
 */
static bool static_path(const char *raw, size_t len, struct rc_buf *rel)
{
	for (size_t i = 0; i < len; i++)
		if (static_encoded_separator(raw, len, i))
			return false;
	if (gw_pct_decode(raw, len, false, rel) != 0 || rel->len == 0 || rel->data[0] != '/')
		return false;
	for (size_t i = 0; i < rel->len; i++) {
		unsigned char ch = (unsigned char)rel->data[i];
		if (ch < 0x20 || ch == 0x7f || ch == '\\')
			return false;
	}
	for (const char *seg = rel->data + 1, *end = rel->data + rel->len; seg <= end;) {
		const char *slash = memchr(seg, '/', (size_t)(end - seg));
		size_t n = (size_t)((slash ? slash : end) - seg);
		if ((n == 0 && slash != NULL) || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
		if (slash == NULL)
			break;
		seg = slash + 1;
	}
	if (rel->data[rel->len - 1] == '/')
		rc_buf_puts(rel, "index.html");
	return rel->err == 0;
}

/* True when path (resolved) is root (resolved) or below it. */
static bool static_below(const char *root, const char *path)
{
	size_t n = strlen(root);

	if (n == 1 && root[0] == '/')
		return true;
	return strncmp(path, root, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* Reads all of fd's size bytes into r->data; false if it came short. */
static bool static_read_all(struct static_read *r, int fd, size_t size)
{
	size_t got = 0;

	r->data = malloc(size > 0 ? size : 1);
	if (r->data == NULL) {
		r->status = 503;
		return false;
	}
	while (got < size) {
		ssize_t n = read(fd, r->data + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	r->len = size;
	return true;
}

/*
 * Pool thread: resolves the folder and the file and reads the file when it
 * lies below the folder. The folder is resolved on every request (a few
 * lstat calls off the loop), so it may be replaced while the gateway runs.
 * A component swapped for a symlink between realpath and open could still
 * lead out: only someone who can write in the folder can do that, and they
 * can put any file there anyway.
 */
static void static_work(uv_work_t *w)
{
	struct static_read *r = gw_container_of(w, struct static_read, work);
	char *root = realpath(r->dir, NULL), *real = NULL;
	struct rc_buf full;
	struct stat st;
	int fd = -1;

	r->status = 404;
	rc_buf_init(&full);
	if (root == NULL)
		goto out;
	rc_buf_printf(&full, "%s%s", strcmp(root, "/") == 0 ? "" : root, r->rel);
	if (full.err) {
		r->status = 503;
		goto out;
	}
	real = realpath(full.data, NULL);
	if (real == NULL || !static_below(root, real))
		goto out;
	/* O_NONBLOCK: a FIFO opens at once (and is refused below) instead of waiting for a writer */
	fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto out;
	if (st.st_size > r->max_bytes) {
		r->too_large = true;
		goto out;
	}
	if (static_read_all(r, fd, (size_t)st.st_size))
		r->status = 200;
out:
	if (fd >= 0)
		close(fd);
	free(real);
	free(root);
	rc_buf_fini(&full);
}

/* Answers with {"error":…}, as gw_conn_error does. */
static void static_error(struct static_read *r, int status, const char *code, const char *message)
{
	struct rc_buf b;

	rc_buf_init(&b);
	gw_response_error_json(&b, code, message);
	gw_slot_respond(r->gw, r->slot, status, "application/json", NULL, b.data ? b.data : "", b.len,
			r->close || status == 503);
	rc_buf_fini(&b);
}

/* Loop thread: the pool is done with r; answer and free it. */
static void static_done(uv_work_t *w, int status)
{
	struct static_read *r = gw_container_of(w, struct static_read, work);

	(void)status; /* never cancelled */
	if (r->status == 200) {
		gw_slot_respond(r->gw, r->slot, 200, static_content_type(r->rel), "Cache-Control: no-cache\r\n",
				r->data, r->len, r->close);
	} else if (r->status == 503) {
		static_error(r, 503, "out_of_memory", "the gateway is out of memory");
	} else {
		if (r->too_large) {
			struct rc_buf path;
			rc_buf_init(&path);
			rc_buf_json_str(&path, r->rel, strlen(r->rel));
			rc_log_warn("a static file is larger than --static-max-bytes; answered 404",
				    "path=%s max_bytes=%" PRId64, path.data ? path.data : "\"\"", r->max_bytes);
			rc_buf_fini(&path);
		}
		static_error(r, 404, "not_found", STATIC_NOT_FOUND);
	}
	free(r->data);
	free(r);
}

void gw_static_get(struct gw_conn *c, const struct gw_req *req, const char *path, size_t plen)
{
	struct gw *gw = c->gw;
	struct static_read *r = NULL;
	struct rc_buf rel;

	rc_buf_init(&rel);
	if (!static_path(path, plen, &rel)) {
		if (rel.err)
			goto out_nomem;
		gw_conn_error(c, 404, "not_found", STATIC_NOT_FOUND, NULL);
		goto out;
	}
	r = calloc(1, sizeof(*r) + rel.len + 1);
	if (r == NULL)
		goto out_nomem;
	r->gw = gw;
	r->close = !req->keep_alive;
	r->dir = gw->opt.static_dir;
	r->max_bytes = gw->opt.static_max_bytes;
	memcpy(r->rel, rel.data, rel.len);
	r->slot = gw_conn_slot(c);
	if (r->slot == NULL)
		goto out_nomem;
	if (uv_queue_work(gw->loop, &r->work, static_work, static_done) != 0) {
		r->status = 503;
		static_done(&r->work, 0);
	}
	r = NULL; /* static_done frees it */
	goto out;

out_nomem:
	gw_conn_error(c, 503, "out_of_memory", "the gateway is out of memory", NULL);
out:
	free(r);
	rc_buf_fini(&rel);
}
