/*
 * test_store.c - the broker's durable history (broker/store.c) on real files
 * in a temporary directory under $TMPDIR: the epoch of a fresh directory and
 * of a reopened one, every record handed back in gseq order, segments rolled
 * at --segment-bytes, trimmed whole (never the last, the rooms checkpoint
 * first), a torn tail cut, corruption refused (file and offset named) or cut
 * by --repair, the directory's lock, an append that fails under a file-size
 * limit leaving nothing behind, and the --fsync modes.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "log.h"
#include "segment.h"
#include "stderr_capture.h"
#include "store.h"

/* ---- a temporary directory per test ---- */

struct fx {
	char root[256]; /* mkdtemp'd */
	char dir[300];	/* root/data: the store's directory (store_open creates it) */
};

static void rm_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (d == NULL) {
		unlink(path);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		char sub[600];
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		rm_tree(sub);
	}
	closedir(d);
	rmdir(path);
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (f == NULL)
		return -1;
	snprintf(f->root, sizeof(f->root), "%s/roomcast-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(f->root) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->dir, sizeof(f->dir), "%s/data", f->root);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	rm_tree(f->root);
	free(f);
	return 0;
}

static void path_of(const struct fx *f, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", f->dir, name);
}

static void seg_path(const struct fx *f, uint64_t base, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%020" PRIu64 ".seg", f->dir, base);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/* The names of DIR's segments, sorted, as their first gseqs; returns how many. */
static size_t list_segs(const struct fx *f, uint64_t *bases, size_t max)
{
	DIR *d = opendir(f->dir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len == 24 && strcmp(e->d_name + 20, ".seg") == 0 && n < max)
			bases[n++] = strtoull(e->d_name, NULL, 10);
	}
	closedir(d);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && bases[j - 1] > bases[j]; j--) {
			uint64_t t = bases[j];
			bases[j] = bases[j - 1];
			bases[j - 1] = t;
		}
	return n;
}

/* ---- records ---- */

#define PAD 40 /* bytes of padding in each event's JSON: about 100 bytes a record */

/* The JSON of event gseq: {"i":gseq,"p":"xxx..."}, the same at encode and at check; every one the same size. */
static size_t event_json(uint64_t gseq, char *buf, size_t len)
{
	char pad[PAD + 1];
	memset(pad, 'x', PAD);
	pad[PAD] = '\0';
	return (size_t)snprintf(buf, len, "{\"i\":%06" PRIu64 ",\"p\":\"%s\"}", gseq, pad);
}

static size_t event_record_size(uint64_t gseq)
{
	char json[128];
	return seg_record_size(4, 0, event_json(gseq, json, sizeof(json)));
}

/* Encodes events first..first+n-1 (room "room", rseq = gseq) into a malloc'd buffer. */
static uint8_t *encode_events(uint64_t first, size_t n, size_t *len)
{
	size_t total = 0, off = 0;
	uint8_t *buf;

	for (size_t i = 0; i < n; i++)
		total += event_record_size(first + i);
	buf = malloc(total);
	assert_non_null(buf);
	for (size_t i = 0; i < n; i++) {
		char json[128];
		struct seg_record r = {
			.type = SEG_REC_EVENT,
			.gseq = first + i,
			.rseq = first + i,
			.time_ms = 1000 + first + i,
			.room = "room",
			.room_len = 4,
		};
		r.json_len = (uint32_t)event_json(first + i, json, sizeof(json));
		r.json = json;
		off += seg_encode(buf + off, &r);
	}
	assert_int_equal(off, total);
	*len = total;
	return buf;
}

static int append_events(struct store *s, uint64_t first, size_t n)
{
	size_t len;
	uint8_t *buf = encode_events(first, n, &len);
	int rv = store_append(s, buf, len, first);
	free(buf);
	return rv;
}

/* What recovery handed back. */
struct got {
	size_t n, events, rooms;
	uint8_t type[4096];
	uint64_t gseq[4096], rseq[4096];
	bool json_ok; /* every event's JSON is the one encoded for its gseq */
};

static int collect(void *arg, const struct seg_record *r)
{
	struct got *g = arg;
	char json[128];

	assert_true(g->n < 4096);
	g->type[g->n] = r->type;
	g->gseq[g->n] = r->gseq;
	g->rseq[g->n] = r->rseq;
	g->n++;
	if (r->type == SEG_REC_EVENT) {
		size_t len = event_json(r->gseq, json, sizeof(json));
		g->events++;
		if (r->json_len != len || memcmp(r->json, json, len) != 0 || r->room_len != 4 ||
		    memcmp(r->room, "room", 4) != 0)
			g->json_ok = false;
	} else if (r->type == SEG_REC_ROOM) {
		g->rooms++;
	}
	return 0;
}

static struct store_config config(const struct fx *f, size_t segment_bytes)
{
	struct store_config c = {
		.dir = f->dir, .fsync = STORE_FSYNC_NONE, .interval_ms = 1000, .segment_bytes = segment_bytes
	};
	return c;
}

/* Opens the store; got is reset first. */
static int open_store(const struct store_config *c, uint64_t new_epoch, struct got *g, struct store **s,
		      struct store_recovery *rec)
{
	memset(g, 0, sizeof(*g));
	g->json_ok = true;
	return store_open(c, new_epoch, collect, g, s, rec);
}

/* The events handed back are exactly first..last, in order, each as encoded. */
static void assert_events(const struct got *g, uint64_t first, uint64_t last)
{
	size_t k = 0;

	assert_true(g->json_ok);
	for (size_t i = 0; i < g->n; i++) {
		if (g->type[i] != SEG_REC_EVENT)
			continue;
		assert_int_equal(g->gseq[i], first + k);
		assert_int_equal(g->rseq[i], first + k);
		k++;
	}
	assert_int_equal(k, last + 1 - first);
}

/* Overwrites one byte of a file. */
static void poke(const char *path, uint64_t off, uint8_t byte)
{
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &byte, 1, (off_t)off), 1);
	close(fd);
}

/* ---- the tests ---- */

static void test_fresh_dir_writes_the_epoch(void **state)
{
	struct fx *f = *state;
	struct store_config c = config(f, 1 << 20);
	struct store_recovery rec;
	struct store_stats st;
	struct store *s;
	struct got g;
	char path[400], buf[64] = { 0 };
	FILE *fp;
	uint64_t bases[4];

	assert_false(exists(f->dir));
	assert_int_equal(open_store(&c, 0x6f1c2a9eu, &g, &s, &rec), RC_OK);
	assert_true(rec.fresh);
	assert_false(rec.repaired);
	assert_int_equal(rec.events, 0);
	assert_int_equal(rec.next_gseq, 1);
	assert_int_equal(rec.cut_bytes, 0);
	assert_int_equal(g.n, 0);
	assert_int_equal(store_epoch(s), 0x6f1c2a9eu);
	path_of(f, "epoch", path, sizeof(path));
	fp = fopen(path, "r");
	assert_non_null(fp);
	assert_non_null(fgets(buf, sizeof(buf), fp));
	fclose(fp);
	assert_string_equal(buf, "000000006f1c2a9e\n");
	/* one segment, from gseq 1, with its header only */
	assert_int_equal(list_segs(f, bases, 4), 1);
	assert_int_equal(bases[0], 1);
	seg_path(f, 1, path, sizeof(path));
	assert_int_equal(file_size(path), SEG_HDR_SIZE);
	store_stats(s, &st);
	assert_int_equal(st.bytes, SEG_HDR_SIZE);
	assert_int_equal(st.segments, 1);
	assert_int_equal(st.first_gseq, 1);
	assert_int_equal(st.write_errors, 0);
	assert_true(st.recovery_ms >= 0);
	store_close(s);
}

static void test_reopen_keeps_epoch_and_every_record(void **state)
{
	struct fx *f = *state;
	struct store_config c = config(f, 1 << 20);
	struct store_recovery rec;
	struct store_stats st;
	struct store *s;
	struct got g;
	uint64_t bytes;

	assert_int_equal(open_store(&c, 0x1234, &g, &s, &rec), RC_OK);
	assert_int_equal(append_events(s, 1, 3), RC_OK);
	assert_int_equal(append_events(s, 4, 1), RC_OK);
	assert_int_equal(append_events(s, 5, 20), RC_OK);
	assert_int_equal(store_sync(s), RC_OK);
	store_stats(s, &st);
	bytes = st.bytes;
	store_close(s);

	assert_int_equal(open_store(&c, 0x9999, &g, &s, &rec), RC_OK);
	assert_false(rec.fresh);
	assert_false(rec.repaired);
	assert_int_equal(store_epoch(s), 0x1234);
	assert_int_equal(rec.events, 24);
	assert_int_equal(rec.next_gseq, 25);
	assert_int_equal(rec.cut_bytes, 0);
	assert_int_equal(g.rooms, 0);
	assert_events(&g, 1, 24);
	store_stats(s, &st);
	assert_int_equal(st.bytes, bytes);
	/* appends go on where the log ended */
	assert_int_equal(append_events(s, 25, 2), RC_OK);
	store_close(s);
	assert_int_equal(open_store(&c, 0x9999, &g, &s, &rec), RC_OK);
	assert_int_equal(store_epoch(s), 0x1234);
	assert_events(&g, 1, 26);
	store_close(s);
}

static void test_rolls_at_segment_bytes(void **state)
{
	struct fx *f = *state;
	size_t rec_size = event_record_size(1);
	/* room for the header and 3 records of ~100 bytes, not 4 */
	struct store_config c = config(f, SEG_HDR_SIZE + 3 * rec_size + rec_size / 2);
	struct store_recovery rec;
	struct store_stats st;
	struct store *s;
	struct got g;
	uint64_t bases[16];
	char path[400];

	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	assert_int_equal(append_events(s, 1, 2), RC_OK);
	assert_int_equal(append_events(s, 3, 1), RC_OK); /* fills the first: 3 records */
	assert_int_equal(list_segs(f, bases, 16), 1);
	assert_int_equal(append_events(s, 4, 2), RC_OK); /* would pass it: a new segment from gseq 4 */
	assert_int_equal(list_segs(f, bases, 16), 2);
	assert_int_equal(bases[1], 4);
	/* a batch larger than a segment goes whole into a segment of its own, never split */
	assert_int_equal(append_events(s, 6, 5), RC_OK);
	assert_int_equal(list_segs(f, bases, 16), 3);
	assert_int_equal(bases[2], 6);
	seg_path(f, 6, path, sizeof(path));
	assert_int_equal(file_size(path), SEG_HDR_SIZE + 5 * rec_size);
	assert_int_equal(append_events(s, 11, 1), RC_OK);
	assert_int_equal(list_segs(f, bases, 16), 4);
	assert_int_equal(bases[3], 11);
	store_stats(s, &st);
	assert_int_equal(st.segments, 4);
	assert_int_equal(st.first_gseq, 1);
	assert_int_equal(st.bytes, 4 * SEG_HDR_SIZE + 11 * rec_size);
	store_close(s);

	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
	assert_int_equal(store_epoch(s), 7);
	assert_events(&g, 1, 11);
	assert_int_equal(rec.next_gseq, 12);
	store_stats(s, &st);
	assert_int_equal(st.segments, 4);
	assert_int_equal(st.bytes, 4 * SEG_HDR_SIZE + 11 * rec_size);
	store_close(s);
}

/* A rooms checkpoint as history.c writes it: header (next gseq), then one SEG_REC_ROOM record per room. */
static uint8_t *rooms_checkpoint(uint64_t next_gseq, uint64_t rseq, size_t *len)
{
	struct seg_record r = { .type = SEG_REC_ROOM, .rseq = rseq, .room = "room", .room_len = 4 };
	uint8_t *buf = malloc(SEG_HDR_SIZE + seg_record_size(4, 0, 0));

	assert_non_null(buf);
	seg_put_header(buf, next_gseq);
	*len = SEG_HDR_SIZE + seg_encode(buf + SEG_HDR_SIZE, &r);
	return buf;
}

static void test_trim_deletes_whole_old_segments_never_the_last(void **state)
{
	struct fx *f = *state;
	size_t rec_size = event_record_size(1), clen;
	struct store_config c = config(f, SEG_HDR_SIZE + 2 * rec_size); /* 2 records a segment */
	struct store_recovery rec;
	struct store_stats st;
	struct store *s;
	struct got g;
	uint64_t bases[16];
	uint8_t *cp;
	char path[400];

	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	for (uint64_t i = 1; i <= 8; i += 2)
		assert_int_equal(append_events(s, i, 2), RC_OK);
	assert_int_equal(list_segs(f, bases, 16), 4); /* 1, 3, 5, 7 */

	/* the oldest event kept is 4: only the segment of 1-2 holds nothing kept */
	assert_false(store_trim_due(s, 2));
	assert_true(store_trim_due(s, 4));
	path_of(f, "rooms", path, sizeof(path));
	assert_false(exists(path));
	cp = rooms_checkpoint(9, 8, &clen);
	store_trim(s, 4, cp, clen);
	assert_int_equal(list_segs(f, bases, 16), 3);
	assert_int_equal(bases[0], 3);
	assert_int_equal(file_size(path), clen);
	store_stats(s, &st);
	assert_int_equal(st.segments, 3);
	assert_int_equal(st.first_gseq, 3);
	assert_int_equal(st.bytes, 3 * (SEG_HDR_SIZE + 2 * rec_size));

	/* past the last event: every segment but the last goes */
	store_trim(s, 100, cp, clen);
	assert_int_equal(list_segs(f, bases, 16), 1);
	assert_int_equal(bases[0], 7);
	assert_false(store_trim_due(s, 100));
	store_stats(s, &st);
	assert_int_equal(st.segments, 1);
	assert_int_equal(st.first_gseq, 7);
	assert_int_equal(st.bytes, SEG_HDR_SIZE + 2 * rec_size);
	store_close(s);
	free(cp);

	/* the checkpoint comes back first, then the events of what is left */
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
	assert_int_equal(store_epoch(s), 7);
	assert_int_equal(rec.rooms, 1);
	assert_int_equal(g.type[0], SEG_REC_ROOM);
	assert_int_equal(g.rseq[0], 8);
	assert_int_equal(rec.events, 2);
	assert_events(&g, 7, 8);
	assert_int_equal(rec.next_gseq, 9);
	store_close(s);
}

static void test_trim_keeps_segments_when_the_checkpoint_fails(void **state)
{
	struct fx *f = *state;
	size_t rec_size = event_record_size(1), clen;
	struct store_config c = config(f, SEG_HDR_SIZE + 2 * rec_size);
	struct store_recovery rec;
	struct store *s;
	struct got g;
	uint64_t bases[16];
	uint8_t *cp = rooms_checkpoint(7, 6, &clen);
	char path[400];

	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	for (uint64_t i = 1; i <= 6; i += 2)
		assert_int_equal(append_events(s, i, 2), RC_OK);
	/* rooms.tmp cannot be written (a directory is in its way): no checkpoint, so no deletion */
	path_of(f, "rooms.tmp", path, sizeof(path));
	assert_int_equal(mkdir(path, 0755), 0);
	store_trim(s, 5, cp, clen);
	assert_int_equal(list_segs(f, bases, 16), 3);
	assert_true(store_trim_due(s, 5));
	rmdir(path);
	store_trim(s, 5, cp, clen);
	assert_int_equal(list_segs(f, bases, 16), 1);
	assert_int_equal(bases[0], 5);
	store_close(s);
	free(cp);
}

static void test_torn_tail_is_cut_and_appends_go_on(void **state)
{
	struct fx *f = *state;
	size_t rec_size = event_record_size(1);
	struct store_config c = config(f, 1 << 20);
	/* cuts inside the last record: in its length, its checksum, its body, one byte short */
	size_t cuts[] = { 1, 4, 7, 8, 20, rec_size - 1 };
	char path[400];

	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		struct store_recovery rec;
		struct store *s;
		struct got g;
		uint64_t full;

		rm_tree(f->dir);
		assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
		assert_int_equal(append_events(s, 1, 5), RC_OK);
		store_close(s);
		seg_path(f, 1, path, sizeof(path));
		full = file_size(path);
		/* the crash left the last record's first cuts[k] bytes */
		assert_int_equal(truncate(path, (off_t)(full - rec_size + cuts[k])), 0);

		assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
		assert_false(rec.repaired);
		assert_int_equal(store_epoch(s), 7);
		assert_int_equal(rec.cut_bytes, cuts[k]);
		assert_int_equal(rec.events, 4);
		assert_int_equal(rec.next_gseq, 5);
		assert_events(&g, 1, 4);
		assert_int_equal(file_size(path), full - rec_size);
		assert_int_equal(append_events(s, 5, 2), RC_OK);
		store_close(s);

		assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
		assert_int_equal(rec.cut_bytes, 0);
		assert_events(&g, 1, 6);
		store_close(s);
	}
}

static void test_zeros_after_the_last_record_are_a_torn_tail(void **state)
{
	struct fx *f = *state;
	struct store_config c = config(f, 1 << 20);
	struct store_recovery rec;
	struct store *s;
	struct got g;
	char path[400];
	uint64_t full;

	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	assert_int_equal(append_events(s, 1, 3), RC_OK);
	store_close(s);
	seg_path(f, 1, path, sizeof(path));
	full = file_size(path);
	/* a file system that grew the file before the data landed: zeros */
	assert_int_equal(truncate(path, (off_t)(full + 4096)), 0);
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
	assert_int_equal(rec.cut_bytes, 4096);
	assert_events(&g, 1, 3);
	assert_int_equal(file_size(path), full);
	store_close(s);
}

static void test_a_roll_cut_before_its_header_is_removed(void **state)
{
	struct fx *f = *state;
	size_t rec_size = event_record_size(1);
	struct store_config c = config(f, SEG_HDR_SIZE + 2 * rec_size);
	struct store_recovery rec;
	struct store *s;
	struct got g;
	uint64_t bases[16];
	char path[400];
	int fd;

	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	assert_int_equal(append_events(s, 1, 2), RC_OK);
	store_close(s);
	/* the crash came while the next segment's header was being written */
	seg_path(f, 3, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "RCSEG", 5), 5);
	close(fd);
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
	assert_int_equal(store_epoch(s), 7);
	assert_int_equal(rec.cut_bytes, 5);
	assert_false(exists(path));
	assert_events(&g, 1, 2);
	assert_int_equal(append_events(s, 3, 1), RC_OK);
	assert_int_equal(list_segs(f, bases, 16), 2);
	assert_int_equal(bases[1], 3);
	store_close(s);
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
	assert_events(&g, 1, 3);
	store_close(s);
}

static void test_a_missing_segment_is_corruption(void **state)
{
	struct fx *f = *state;
	size_t rec_size = event_record_size(1);
	struct store_config c = config(f, SEG_HDR_SIZE + 2 * rec_size);
	struct store_recovery rec;
	struct store *s;
	struct got g;
	char path[400], *log;

	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	for (uint64_t i = 1; i <= 6; i += 2)
		assert_int_equal(append_events(s, i, 2), RC_OK);
	store_close(s);
	seg_path(f, 3, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	capture_start();
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_EPROTO);
	log = capture_end(NULL);
	assert_non_null(strstr(log, "00000000000000000005.seg offset=0 "));
	assert_non_null(strstr(log, "a segment is missing"));
	free(log);
}

static void test_corruption_in_the_middle_is_refused_with_file_and_offset(void **state)
{
	struct fx *f = *state;
	size_t rec_size = event_record_size(1);
	struct store_config c = config(f, 1 << 20);
	struct store_recovery rec;
	struct store *s = NULL;
	struct got g;
	char path[400], want[500], *log;
	uint64_t bad = SEG_HDR_SIZE + 2 * rec_size; /* the third record */

	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	assert_int_equal(append_events(s, 1, 6), RC_OK);
	store_close(s);
	seg_path(f, 1, path, sizeof(path));
	poke(path, bad + rec_size - 3, '#'); /* inside its JSON */

	capture_start();
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_EPROTO);
	log = capture_end(NULL);
	snprintf(want, sizeof(want), "file=%s offset=%" PRIu64 " ", path, bad);
	assert_non_null(strstr(log, want));
	assert_non_null(strstr(log, "bad checksum"));
	assert_non_null(strstr(log, "--repair"));
	free(log);
	/* nothing was changed: the same refusal again */
	assert_int_equal(file_size(path), SEG_HDR_SIZE + 6 * rec_size);
	capture_start();
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_EPROTO);
	free(capture_end(NULL));
}

static void test_repair_cuts_at_the_corruption_and_starts_a_new_epoch(void **state)
{
	struct fx *f = *state;
	size_t rec_size = event_record_size(1);
	struct store_config c = config(f, SEG_HDR_SIZE + 3 * rec_size); /* 3 records a segment */
	struct store_recovery rec;
	struct store *s;
	struct store_stats st;
	struct got g;
	uint64_t bases[16];
	char path[400];

	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	for (uint64_t i = 1; i <= 9; i += 3)
		assert_int_equal(append_events(s, i, 3), RC_OK);
	store_close(s);
	assert_int_equal(list_segs(f, bases, 16), 3); /* 1, 4, 7 */
	seg_path(f, 4, path, sizeof(path));
	poke(path, SEG_HDR_SIZE + rec_size + 20, 0xff); /* gseq 5, the middle one of the middle segment */

	c.repair = true;
	capture_start();
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
	free(capture_end(NULL));
	assert_true(rec.repaired);
	assert_int_equal(store_epoch(s), 8);
	assert_events(&g, 1, 4);
	assert_int_equal(rec.events, 4);
	assert_int_equal(rec.next_gseq, 5);
	/* dropped: gseq 5 and 6 of the middle segment, and the whole last one */
	assert_int_equal(rec.cut_bytes, 2 * rec_size + SEG_HDR_SIZE + 3 * rec_size);
	assert_int_equal(list_segs(f, bases, 16), 2);
	assert_int_equal(file_size(path), SEG_HDR_SIZE + rec_size);
	store_stats(s, &st);
	assert_int_equal(st.segments, 2);
	assert_int_equal(st.bytes, 2 * SEG_HDR_SIZE + 4 * rec_size);
	assert_int_equal(append_events(s, 5, 1), RC_OK);
	store_close(s);

	c.repair = false;
	assert_int_equal(open_store(&c, 9, &g, &s, &rec), RC_OK);
	assert_false(rec.repaired);
	assert_int_equal(store_epoch(s), 8);
	assert_events(&g, 1, 5);
	store_close(s);
}

static void test_repair_of_a_bad_segment_header_counts_what_it_drops(void **state)
{
	struct fx *f = *state;
	size_t rec_size = event_record_size(1);
	struct store_config c = config(f, SEG_HDR_SIZE + 3 * rec_size);
	struct store_recovery rec;
	struct store *s;
	struct got g;
	uint64_t bases[16];
	char path[400], *log;

	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	for (uint64_t i = 1; i <= 9; i += 3)
		assert_int_equal(append_events(s, i, 3), RC_OK);
	store_close(s);
	seg_path(f, 4, path, sizeof(path));
	poke(path, 0, 'X'); /* the magic of the middle segment */

	capture_start();
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_EPROTO);
	log = capture_end(NULL);
	assert_non_null(strstr(log, "00000000000000000004.seg offset=0 "));
	free(log);

	c.repair = true;
	capture_start();
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
	free(capture_end(NULL));
	assert_true(rec.repaired);
	assert_events(&g, 1, 3);
	assert_int_equal(rec.next_gseq, 4);
	/* the two segments from the bad one on, each counted once */
	assert_int_equal(rec.cut_bytes, 2 * (SEG_HDR_SIZE + 3 * rec_size));
	assert_int_equal(list_segs(f, bases, 16), 1);
	assert_int_equal(append_events(s, 4, 1), RC_OK);
	store_close(s);
}

static void test_lock_refuses_a_second_open(void **state)
{
	struct fx *f = *state;
	struct store_config c = config(f, 1 << 20);
	struct store_recovery rec;
	struct store *s, *s2 = NULL;
	struct got g;
	char *log;

	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	capture_start();
	assert_int_equal(open_store(&c, 8, &g, &s2, &rec), RC_EIO);
	log = capture_end(NULL);
	assert_null(s2);
	assert_non_null(strstr(log, "in use by another broker"));
	free(log);
	/* the refused open left the running store alone */
	assert_int_equal(append_events(s, 1, 1), RC_OK);
	store_close(s);
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
	assert_int_equal(store_epoch(s), 7);
	assert_events(&g, 1, 1);
	store_close(s);
}

/* Sets the soft RLIMIT_FSIZE (RLIM_INFINITY: back to the hard limit). */
static void set_fsize(rlim_t cur)
{
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
	rl.rlim_cur = cur == RLIM_INFINITY ? rl.rlim_max : cur;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void test_failed_append_leaves_nothing_behind(void **state)
{
	struct fx *f = *state;
	size_t rec_size = event_record_size(1);
	struct store_config c = config(f, 1 << 20);
	struct store_recovery rec;
	struct store_stats st;
	struct store *s;
	struct got g;
	char path[400];
	uint64_t size;
	int rv;

	signal(SIGXFSZ, SIG_IGN); /* as the broker does: EFBIG instead of death */
	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	assert_int_equal(append_events(s, 1, 2), RC_OK);
	seg_path(f, 1, path, sizeof(path));
	size = file_size(path);
	/* room for one more record and a half: the batch of 3 is written in part, then EFBIG */
	capture_start();
	set_fsize((rlim_t)(size + rec_size + rec_size / 2));
	rv = append_events(s, 3, 3);
	set_fsize(RLIM_INFINITY);
	free(capture_end(NULL));
	assert_int_equal(rv, RC_EIO);
	assert_int_equal(file_size(path), size);
	store_stats(s, &st);
	assert_int_equal(st.write_errors, 1);
	assert_int_equal(st.bytes, size);
	/* the limit is gone: the same gseqs are written, where the failed batch began */
	assert_int_equal(append_events(s, 3, 3), RC_OK);
	assert_int_equal(file_size(path), size + 3 * rec_size);
	store_close(s);
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
	assert_int_equal(rec.cut_bytes, 0);
	assert_events(&g, 1, 5);
	store_close(s);
}

static void test_failed_roll_leaves_nothing_behind(void **state)
{
	struct fx *f = *state;
	size_t rec_size = event_record_size(1);
	struct store_config c = config(f, SEG_HDR_SIZE + 2 * rec_size);
	struct store_recovery rec;
	struct store_stats st;
	struct store *s;
	struct got g;
	uint64_t bases[16];
	int rv;

	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	assert_int_equal(append_events(s, 1, 2), RC_OK);
	/* the next batch needs a new segment, whose header cannot be written whole */
	capture_start();
	set_fsize(SEG_HDR_SIZE / 2);
	rv = append_events(s, 3, 1);
	set_fsize(RLIM_INFINITY);
	free(capture_end(NULL));
	assert_int_equal(rv, RC_EIO);
	assert_int_equal(list_segs(f, bases, 16), 1);
	store_stats(s, &st);
	assert_int_equal(st.write_errors, 1);
	assert_int_equal(st.segments, 1);
	assert_int_equal(append_events(s, 3, 1), RC_OK);
	assert_int_equal(list_segs(f, bases, 16), 2);
	assert_int_equal(bases[1], 3);
	store_close(s);
	assert_int_equal(open_store(&c, 8, &g, &s, &rec), RC_OK);
	assert_events(&g, 1, 3);
	store_close(s);
}

static void test_sync_counts_fsyncs(void **state)
{
	struct fx *f = *state;
	struct store_config c = config(f, 1 << 20);
	struct store_recovery rec;
	struct store_stats st;
	struct store *s;
	struct got g;

	c.fsync = STORE_FSYNC_ALWAYS;
	assert_int_equal(open_store(&c, 7, &g, &s, &rec), RC_OK);
	assert_int_equal(store_fsync_mode(s), STORE_FSYNC_ALWAYS);
	assert_int_equal(append_events(s, 1, 2), RC_OK);
	assert_int_equal(store_sync(s), RC_OK);
	store_stats(s, &st);
	assert_int_equal(st.fsyncs, 1);
	assert_int_equal(st.fsync_errors, 0);
	assert_true(st.fsync_us_max >= st.fsync_us_last);
	assert_true(st.fsync_us_total >= st.fsync_us_max);
	/* nothing new appended: nothing to wait for, no fdatasync */
	assert_int_equal(store_sync(s), RC_OK);
	store_stats(s, &st);
	assert_int_equal(st.fsyncs, 1);
	assert_int_equal(append_events(s, 3, 1), RC_OK);
	assert_int_equal(store_sync(s), RC_OK);
	store_stats(s, &st);
	assert_int_equal(st.fsyncs, 2);
	store_close(s);
}

static void test_fsync_modes_parse(void **state)
{
	enum store_fsync m = STORE_FSYNC_ALWAYS;
	const char *names[] = { "none", "interval", "always" };
	enum store_fsync modes[] = { STORE_FSYNC_NONE, STORE_FSYNC_INTERVAL, STORE_FSYNC_ALWAYS };

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		assert_true(store_fsync_parse(names[i], &m));
		assert_int_equal(m, modes[i]);
		assert_string_equal(store_fsync_name(modes[i]), names[i]);
	}
	m = STORE_FSYNC_INTERVAL;
	assert_false(store_fsync_parse("", &m));
	assert_false(store_fsync_parse("Always", &m));
	assert_false(store_fsync_parse("sometimes", &m));
	assert_false(store_fsync_parse("none ", &m));
	assert_int_equal(m, STORE_FSYNC_INTERVAL); /* untouched */
}

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_fresh_dir_writes_the_epoch),
		T(test_reopen_keeps_epoch_and_every_record),
		T(test_rolls_at_segment_bytes),
		T(test_trim_deletes_whole_old_segments_never_the_last),
		T(test_trim_keeps_segments_when_the_checkpoint_fails),
		T(test_torn_tail_is_cut_and_appends_go_on),
		T(test_zeros_after_the_last_record_are_a_torn_tail),
		T(test_a_roll_cut_before_its_header_is_removed),
		T(test_a_missing_segment_is_corruption),
		T(test_corruption_in_the_middle_is_refused_with_file_and_offset),
		T(test_repair_cuts_at_the_corruption_and_starts_a_new_epoch),
		T(test_repair_of_a_bad_segment_header_counts_what_it_drops),
		T(test_lock_refuses_a_second_open),
		T(test_failed_append_leaves_nothing_behind),
		T(test_failed_roll_leaves_nothing_behind),
		T(test_sync_counts_fsyncs),
		T(test_fsync_modes_parse),
	};

	rc_log_set_level(RC_LOG_ERROR); /* the warnings of cuts and repairs are expected */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
