/*
 * scan.h - targeted scanner for the bench fields of an event's JSON data.
 *
 * Finds "ts":<int>, "seq":<int>, "room":"<prefix><n>" and a "type" of
 * "stream.reset" by looking for the quoted key, without parsing the JSON.
 * Keys inside nested objects or strings can fool it; the bench publisher
 * never writes such payloads. Pure functions; any thread.
 */
#ifndef RB_SCAN_H
#define RB_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rb_fields {
	bool has_ts;
	bool has_seq;
	bool has_room;  /* "room" found and of the form <prefix><decimal> */
	bool is_reset;  /* "type":"stream.reset" */
	int64_t ts;     /* publish time, ns since the epoch (CLOCK_REALTIME) */
	uint64_t seq;   /* per-room sequence number, from 1 */
	uint32_t room;  /* the <n> of <prefix><n> */
};

/* Clears every flag of f. */
void rb_fields_clear(struct rb_fields *f);

/*
 * Scans one data line s (len bytes) and sets the fields of f it finds that f
 * does not have yet, so several data lines of one event accumulate.
 */
void rb_scan_fields(const char *s, size_t len, const char *room_prefix, size_t prefix_len,
		    struct rb_fields *f);

#endif
