/*
 * target.h - where the bench may send traffic, and what it asks for.
 *
 * The bench only talks to the loopback range: a target must be a numeric
 * 127.x.y.z address (or "localhost"), and source addresses are picked from
 * 127.0.0.1..127.0.0.K. URL templates hold at most one "%s" (the room name)
 * and "%%"; nothing else is expanded, so a template is never a format string.
 * Pure functions; any thread.
 */
#ifndef RB_TARGET_H
#define RB_TARGET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RB_ROOM_NAME_MAX 128

/*
 * Parses "HOST:PORT" (or "HOST", port 8080) into out. Returns 0, -EINVAL for
 * a malformed address or port, -EPERM for a host outside 127.0.0.0/8.
 */
int rb_target_parse(const char *s, struct sockaddr_in *out);

/* Writes "a.b.c.d:port" of addr into buf (at least 24 bytes). */
void rb_target_format(const struct sockaddr_in *addr, char *buf, size_t cap);

/* Source address number i of k: 127.0.0.(1 + i % k), port 0. */
void rb_source_addr(uint32_t i, uint32_t k, struct sockaddr_in *out);

/*
 * Checks a URL template: it starts with '/', holds no whitespace or control
 * bytes, at most one "%s" and no '%' but in "%s"/"%%". Sets *has_room when it
 * holds "%s". Returns 0 or -EINVAL.
 */
int rb_template_check(const char *tmpl, bool *has_room);

/*
 * Writes tmpl with "%s" replaced by room and "%%" by '%' into out (cap bytes,
 * NUL-terminated). Returns the length, or -ENOSPC.
 */
int rb_template_expand(const char *tmpl, const char *room, char *out, size_t cap);

/* Checks a room prefix: 1..64 bytes of [A-Za-z0-9._:@-]. Returns 0 or -EINVAL. */
int rb_room_prefix_check(const char *prefix);

/* Writes "<prefix><n>" into out (cap bytes). Returns the length, or -ENOSPC. */
int rb_room_name(const char *prefix, uint32_t n, char *out, size_t cap);

#endif
