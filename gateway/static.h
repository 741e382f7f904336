/*
 * static.h - files below --static-dir (the demo page).
 *
 * A file is looked up and read on libuv's thread pool (uv_queue_work), never
 * on the loop: opening a file can wait (a FIFO, a slow disk), and the loop
 * serves every stream. The answer fills a slot of the connection (conn.h),
 * so responses keep request order on a pipelined connection.
 *
 * Only what lies below the folder is served. Refused with the 404 of an
 * unknown path, so that nothing tells what exists outside:
 * - a path with an encoded '/' or '\' (%2f, %5c), a '\', a NUL, or, after
 *   percent-decoding, an empty, "." or ".." segment (%2e%2e included);
 * - a path that resolves (realpath, symlinks followed) outside the folder's
 *   own resolved path: a symlink in the folder that points out of it.
 *   Symlinks that stay inside are followed;
 * - anything but a regular file, and a file over --static-max-bytes (read
 *   whole into memory to be sent; the cap bounds that memory per request).
 * A path ending in '/' means its index.html.
 * Loop thread only.
 */
#ifndef GW_STATIC_H
#define GW_STATIC_H

#include <stddef.h>

struct gw_conn;
struct gw_req;

/*
 * Answers GET req for path[0..plen) (the URL without its query) from
 * --static-dir, now (a refused path) or later (from the thread pool).
 * The gateway must have a static dir.
 */
void gw_static_get(struct gw_conn *c, const struct gw_req *req, const char *path, size_t plen);

#endif
