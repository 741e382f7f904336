/*
 * roomcast-store-vs-lmdb: the broker's durable log (broker/store.c, the
 * records of segment.h) against LMDB for the same workload, measured the
 * same way (issue 17: "or LMDB if you measure it better").
 *
 *   roomcast-store-vs-lmdb append  --engine log|lmdb --dir DIR [--sync MODE] [--batch N] [--events N]
 *                                  [--seconds S] [--index] [--writemap] [--retain K] [--verify]
 *   roomcast-store-vs-lmdb recover --engine log|lmdb --dir DIR [--restore history|decode|open]
 *                                  [--ring N] [--tail] [--cold]
 *   roomcast-store-vs-lmdb trim    --engine log|lmdb --dir DIR --keep K [--reappend M] [--verify]
 *   roomcast-store-vs-lmdb check   --dir DIR [--events N]
 *
 * The workload: event gseq g (1, 2, ...) goes to one of --rooms rooms
 * ("room-0042") and carries a chat-message JSON of --payload-min..max bytes,
 * both a function of g alone, so a reader can check every record it gets
 * back. Each batch of --batch events is one store_append (plus store_sync
 * with --sync always) or one LMDB write transaction.
 *
 * The LMDB layout a broker would use: DBI "events", key = gseq big-endian
 * (8 bytes, put with MDB_APPEND), value = the same encoded record the log
 * holds (seg_encode, written into the page with MDB_RESERVE); with --index
 * a DBI "rooms" (MDB_DUPSORT|MDB_DUPFIXED): key = room, 16-byte values
 * rseq|gseq big-endian (MDB_APPENDDUP), what replay by room would read if
 * the broker served replays from LMDB instead of its in-memory ring.
 *
 * --sync: none (log: no fsync; LMDB: MDB_NOSYNC), interval (log: its
 * syncer thread every --interval-ms; LMDB: MDB_NOSYNC and a thread calling
 * mdb_env_sync as often), nometasync (LMDB only: MDB_NOMETASYNC, one
 * fdatasync per commit instead of two), always (log: store_sync after each
 * batch; LMDB: the default, synced commits).
 *
 * recover: a fresh process opens DIR and hands every record to what the
 * broker's start does with it: history_restore into a real history
 * (--restore history), or only the decode (decode; LMDB: seg_decode, which
 * checks the CRC too), or, LMDB only, nothing after mdb_env_open (open).
 * --tail (LMDB with --index): only the last --ring events, and each room's
 * last rseq from the index. --cold first drops DIR's files from the page
 * cache (fdatasync + POSIX_FADV_DONTNEED, these files only).
 *
 * trim: deletes the oldest events so that --keep remain: the log deletes
 * whole segments (store_trim, after the rooms checkpoint the broker writes),
 * LMDB deletes keys (and their index entries) in transactions of
 * --txn-deletes. --reappend then appends M more events and reports the size.
 *
 * check: every engine and mode with small counts, each read back and compared
 * with what was written (the ctest integration_bench_store_vs_lmdb).
 *
 * Every command prints one JSON line per run on stdout; exit 1 when a read
 * back differs from what was written or something failed, 2 on bad options.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "history.h"
#include "log.h"
#include "segment.h"
#include "store.h"

#define PMAX_LIMIT 4096
#define TIME_BASE  1764000000000ull /* time_ms of gseq 0 */

enum sync_mode { SYNC_NONE, SYNC_INTERVAL, SYNC_NOMETASYNC, SYNC_ALWAYS };
static const char *const sync_names[] = { "none", "interval", "nometasync", "always" };

enum restore_mode { RESTORE_HISTORY, RESTORE_DECODE, RESTORE_OPEN };
static const char *const restore_names[] = { "history", "decode", "open" };

struct opts {
	const char *cmd, *dir;
	bool lmdb, index, writemap, verify, cold, tail;
	enum sync_mode sync;
	enum restore_mode restore;
	unsigned batch, rooms, pmin, pmax, interval_ms;
	uint64_t events, retain, keep, reappend, ring, txn_deletes;
	double seconds;
	size_t segment_bytes, mapsize;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* A field of /proc/self/status in KiB (VmHWM, RssAnon, RssFile), -1 if absent. */
static long proc_kb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t n = strlen(field);
	long v = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* A field of /proc/self/io (wchar: bytes handed to write calls; write_bytes: page-cache bytes dirtied). */
static uint64_t proc_io(const char *field)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	size_t n = strlen(field);
	uint64_t v = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			v = strtoull(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* ---- the workload ---- */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

struct wl {
	unsigned rooms, pmin, pmax;
	uint64_t *rseq; /* per room: the last rseq handed out */
	uint64_t gseq;	/* the last gseq handed out */
};

struct wl_event {
	uint64_t gseq, rseq, time_ms;
	unsigned room;
	uint16_t name_len;
	uint32_t json_len;
	char name[16];
	char json[PMAX_LIMIT];
};

static int wl_init(struct wl *w, const struct opts *o)
{
	w->rooms = o->rooms;
	w->pmin = o->pmin;
	w->pmax = o->pmax;
	w->gseq = 0;
	w->rseq = calloc(o->rooms, sizeof(*w->rseq));
	return w->rseq != NULL ? 0 : -1;
}

static void wl_fini(struct wl *w)
{
	free(w->rseq);
}

/* The next event's room and rseq only (a reader skipping what was trimmed). */
static void wl_skip(struct wl *w)
{
	uint64_t g = ++w->gseq;
	w->rseq[mix64(g) % w->rooms]++;
}

/* The next event, whole. */
static void wl_next(struct wl *w, struct wl_event *e)
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyz      "; /* 32 and the NUL */
	uint64_t g = ++w->gseq, h = mix64(g), bits = 0;
	uint32_t len = w->pmin + (uint32_t)(mix64(g ^ 0x5bd1e995u) % (w->pmax - w->pmin + 1));
	int n;

	e->gseq = g;
	e->room = (unsigned)(h % w->rooms);
	e->rseq = ++w->rseq[e->room];
	e->time_ms = TIME_BASE + g;
	e->name_len = (uint16_t)snprintf(e->name, sizeof(e->name), "room-%04u", e->room);
	n = snprintf(e->json, sizeof(e->json),
		     "{\"type\":\"chat.message\",\"user\":\"u%05u\",\"seq\":%" PRIu64 ",\"text\":\"",
		     (unsigned)((h >> 32) % 100000), g);
	for (uint32_t i = (uint32_t)n; i + 2 < len; i++) {
		if ((i & 7) == 0 || bits == 0)
			bits = mix64(g * 131 + i);
		e->json[i] = letters[bits & 31];
		bits >>= 5;
	}
	e->json[len - 2] = '"';
	e->json[len - 1] = '}';
	e->json_len = len;
}

static struct seg_record wl_record(const struct wl_event *e)
{
	return (struct seg_record){
		.type = SEG_REC_EVENT,
		.gseq = e->gseq,
		.rseq = e->rseq,
		.time_ms = e->time_ms,
		.room = e->name,
		.room_len = e->name_len,
		.json = e->json,
		.json_len = e->json_len,
	};
}

/* Checks records read back against the workload, in gseq order (the oldest may have been trimmed). */
struct checker {
	struct wl w;
	uint64_t seen, rooms_seen;
	bool bad;
	char why[160];
};

static int checker_record(void *arg, const struct seg_record *r)
{
	struct checker *c = arg;
	struct wl_event e;

	if (c->bad)
		return 0;
	if (r->type == SEG_REC_ROOM) {
		c->rooms_seen++;
		return 0;
	}
	if (r->type != SEG_REC_EVENT || r->gseq <= c->w.gseq) {
		c->bad = true;
		snprintf(c->why, sizeof(c->why), "record type %u gseq %" PRIu64 " after %" PRIu64, r->type, r->gseq,
			 c->w.gseq);
		return 0;
	}
	if (c->seen > 0 && r->gseq != c->w.gseq + 1) {
		c->bad = true;
		snprintf(c->why, sizeof(c->why), "gap: gseq %" PRIu64 " after %" PRIu64, r->gseq, c->w.gseq);
		return 0;
	}
	while (c->w.gseq + 1 < r->gseq)
		wl_skip(&c->w);
	wl_next(&c->w, &e);
	if (r->rseq != e.rseq || r->time_ms != e.time_ms || r->room_len != e.name_len ||
	    memcmp(r->room, e.name, e.name_len) != 0 || r->json_len != e.json_len ||
	    memcmp(r->json, e.json, e.json_len) != 0 || r->key_len != 0) {
		c->bad = true;
		snprintf(c->why, sizeof(c->why), "gseq %" PRIu64 " differs from what was written", r->gseq);
		return 0;
	}
	c->seen++;
	return 0;
}

/* ---- the directory ---- */

struct du {
	uint64_t disk, apparent; /* st_blocks * 512, st_size */
};

static struct du dir_usage(const char *dir)
{
	struct du u = { 0, 0 };
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d == NULL)
		return u;
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, 0) == 0 && S_ISREG(st.st_mode)) {
			u.disk += (uint64_t)st.st_blocks * 512;
			u.apparent += (uint64_t)st.st_size;
		}
	}
	closedir(d);
	return u;
}

/* Drops DIR's files from the page cache: written back first, then DONTNEED. */
static void dir_drop_cache(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
			fdatasync(fd);
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		}
		close(fd);
	}
	closedir(d);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the log (broker/store.c) ---- */

static int log_open(const struct opts *o, store_record_fn fn, void *arg, struct store **s, struct store_recovery *rec)
{
	struct store_config sc = {
		.dir = o->dir,
		.fsync = o->sync == SYNC_ALWAYS	    ? STORE_FSYNC_ALWAYS
			 : o->sync == SYNC_INTERVAL ? STORE_FSYNC_INTERVAL
						    : STORE_FSYNC_NONE,
		.interval_ms = (int)o->interval_ms,
		.segment_bytes = o->segment_bytes,
	};
	return store_open(&sc, 1, fn, arg, s, rec);
}

/* The rooms checkpoint the broker writes before deleting segments: every room's rseq. */
static uint8_t *log_rooms_checkpoint(const struct wl *w, uint64_t next_gseq, size_t *len)
{
	size_t cap = SEG_HDR_SIZE + (w->rooms + 1) * seg_record_size(16, 0, 0), off = SEG_HDR_SIZE;
	uint8_t *b = malloc(cap);
	struct seg_record g = { .type = SEG_REC_ROOM };

	if (b == NULL)
		return NULL;
	seg_put_header(b, next_gseq);
	off += seg_encode(b + off, &g);
	for (unsigned i = 0; i < w->rooms; i++) {
		char name[16];
		struct seg_record r = { .type = SEG_REC_ROOM, .rseq = w->rseq[i], .room = name };
		r.room_len = (uint16_t)snprintf(name, sizeof(name), "room-%04u", i);
		off += seg_encode(b + off, &r);
	}
	*len = off;
	return b;
}

static int count_record(void *arg, const struct seg_record *r)
{
	(void)r;
	(*(uint64_t *)arg)++;
	return 0;
}

/* ---- LMDB ---- */

struct lm {
	MDB_env *env;
	MDB_dbi ev, ix;
	bool has_ix;
	pthread_t syncer;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, has_syncer;
	unsigned interval_ms;
	uint64_t syncs;
};

static void be64_put(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t be64_get(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static void *lm_syncer(void *arg)
{
	struct lm *l = arg;

	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += l->interval_ms / 1000;
		ts.tv_nsec += (long)(l->interval_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&l->cv, &l->mu, &ts);
		if (l->stop)
			break;
		pthread_mutex_unlock(&l->mu);
		mdb_env_sync(l->env, 1);
		pthread_mutex_lock(&l->mu);
		l->syncs++;
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

static void lm_close(struct lm *l)
{
	if (l->has_syncer) {
		pthread_mutex_lock(&l->mu);
		l->stop = true;
		pthread_cond_broadcast(&l->cv);
		pthread_mutex_unlock(&l->mu);
		pthread_join(l->syncer, NULL);
		l->has_syncer = false;
	}
	if (l->env != NULL) {
		mdb_env_close(l->env); /* syncs unless MDB_NOSYNC */
		l->env = NULL;
	}
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
}

/* Opens (creating) the environment in o->dir; create_index: make the rooms DBI (else: use it if there). */
static int lm_open(const struct opts *o, struct lm *l, bool create_index)
{
	unsigned flags = 0;
	MDB_txn *txn;
	int rc;

	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	if (mkdir(o->dir, 0755) != 0 && errno != EEXIST)
		return errno;
	if (o->sync == SYNC_NONE || o->sync == SYNC_INTERVAL)
		flags |= MDB_NOSYNC;
	else if (o->sync == SYNC_NOMETASYNC)
		flags |= MDB_NOMETASYNC;
	if (o->writemap)
		flags |= MDB_WRITEMAP;
	if ((rc = mdb_env_create(&l->env)) != 0 || (rc = mdb_env_set_mapsize(l->env, o->mapsize)) != 0 ||
	    (rc = mdb_env_set_maxdbs(l->env, 4)) != 0 || (rc = mdb_env_open(l->env, o->dir, flags, 0644)) != 0)
		goto fail;
	if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0)
		goto fail;
	rc = mdb_dbi_open(txn, "events", MDB_CREATE, &l->ev);
	if (rc == 0) {
		rc = mdb_dbi_open(txn, "rooms", MDB_DUPSORT | MDB_DUPFIXED | (create_index ? MDB_CREATE : 0), &l->ix);
		l->has_ix = rc == 0;
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		goto fail;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	if (o->sync == SYNC_INTERVAL) {
		l->interval_ms = o->interval_ms;
		if (pthread_create(&l->syncer, NULL, lm_syncer, l) != 0) {
			rc = ENOMEM;
			goto fail;
		}
		l->has_syncer = true;
	}
	return 0;
fail:
	fprintf(stderr, "level=error msg=\"lmdb open\" dir=%s err=\"%s\"\n", o->dir, mdb_strerror(rc));
	lm_close(l);
	return rc;
}

/* The oldest and newest gseq in the events DBI (0, 0 when empty). */
static int lm_bounds(struct lm *l, MDB_txn *txn, uint64_t *first, uint64_t *last)
{
	MDB_cursor *c;
	MDB_val k, v;
	int rc = mdb_cursor_open(txn, l->ev, &c);

	*first = *last = 0;
	if (rc != 0)
		return rc;
	if ((rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)) == 0) {
		*first = be64_get(k.mv_data);
		if ((rc = mdb_cursor_get(c, &k, &v, MDB_LAST)) == 0)
			*last = be64_get(k.mv_data);
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deletes the oldest event (and its index entry) in txn. */
static int lm_delete_oldest(MDB_cursor *c, MDB_cursor *ic)
{
	MDB_val k, v;
	int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);

	if (rc != 0)
		return rc;
	if (ic != NULL) {
		struct seg_record r;
		size_t used;
		uint8_t d[16];
		MDB_val rk, dv = { sizeof(d), d };

		if (seg_decode(v.mv_data, v.mv_size, &r, &used) != SEG_DEC_OK)
			return MDB_CORRUPTED;
		be64_put(d, r.rseq);
		be64_put(d + 8, r.gseq);
		rk.mv_size = r.room_len;
		rk.mv_data = (void *)r.room;
		if ((rc = mdb_cursor_get(ic, &rk, &dv, MDB_GET_BOTH)) != 0 || (rc = mdb_cursor_del(ic, 0)) != 0)
			return rc;
	}
	return mdb_cursor_del(c, 0);
}

/* One write transaction: the batch's events (and index entries), then deletes down to retain (0: none). */
static int lm_write_batch(struct lm *l, const struct wl_event *evs, unsigned n, uint64_t retain, uint64_t *first,
			  uint64_t *deleted)
{
	MDB_txn *txn;
	MDB_cursor *c, *ic = NULL;
	int rc = mdb_txn_begin(l->env, NULL, 0, &txn);

	if (rc != 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, l->ev, &c)) != 0 || (l->has_ix && (rc = mdb_cursor_open(txn, l->ix, &ic)) != 0))
		goto abort;
	for (unsigned i = 0; i < n; i++) {
		const struct wl_event *e = &evs[i];
		struct seg_record r = wl_record(e);
		uint8_t kb[8];
		MDB_val k = { sizeof(kb), kb }, v = { seg_record_size(e->name_len, 0, e->json_len), NULL };

		be64_put(kb, e->gseq);
		if ((rc = mdb_cursor_put(c, &k, &v, MDB_APPEND | MDB_RESERVE)) != 0)
			goto abort;
		seg_encode(v.mv_data, &r);
		if (ic != NULL) {
			uint8_t d[16];
			MDB_val rk = { e->name_len, (void *)e->name }, dv = { sizeof(d), d };
			be64_put(d, e->rseq);
			be64_put(d + 8, e->gseq);
			if ((rc = mdb_cursor_put(ic, &rk, &dv, MDB_APPENDDUP)) != 0)
				goto abort;
		}
	}
	if (retain > 0 && n > 0) {
		uint64_t last = evs[n - 1].gseq;
		while (last - *first + 1 > retain) {
			if ((rc = lm_delete_oldest(c, ic)) != 0)
				goto abort;
			(*first)++;
			(*deleted)++;
		}
	}
	return mdb_txn_commit(txn);
abort:
	mdb_txn_abort(txn);
	return rc;
}

/* Reads every event back (and checks the index against them); c gets them in order. */
static int lm_verify(struct lm *l, struct checker *c, uint64_t *index_entries)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn);

	*index_entries = 0;
	if (rc != 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, l->ev, &cur)) != 0)
		goto out;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct seg_record r;
		size_t used;
		if (k.mv_size != 8 || seg_decode(v.mv_data, v.mv_size, &r, &used) != SEG_DEC_OK || used != v.mv_size ||
		    r.gseq != be64_get(k.mv_data)) {
			c->bad = true;
			snprintf(c->why, sizeof(c->why), "lmdb: bad record at key %" PRIu64,
				 k.mv_size == 8 ? be64_get(k.mv_data) : 0);
			break;
		}
		checker_record(c, &r);
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	if (rc == 0 && l->has_ix && !c->bad) {
		/* every index entry names an event of that room and rseq */
		MDB_cursor *ic;
		if ((rc = mdb_cursor_open(txn, l->ix, &ic)) != 0)
			goto out;
		if ((rc = mdb_cursor_open(txn, l->ev, &cur)) != 0) {
			mdb_cursor_close(ic);
			goto out;
		}
		for (rc = mdb_cursor_get(ic, &k, &v, MDB_FIRST); rc == 0 && !c->bad;
		     rc = mdb_cursor_get(ic, &k, &v, MDB_NEXT)) {
			MDB_val ek = { 8, (uint8_t *)v.mv_data + 8 }, ev;
			struct seg_record r;
			size_t used;
			(*index_entries)++;
			if (v.mv_size != 16 || mdb_cursor_get(cur, &ek, &ev, MDB_SET_KEY) != 0 ||
			    seg_decode(ev.mv_data, ev.mv_size, &r, &used) != SEG_DEC_OK ||
			    r.rseq != be64_get(v.mv_data) || r.room_len != k.mv_size ||
			    memcmp(r.room, k.mv_data, k.mv_size) != 0) {
				c->bad = true;
				snprintf(c->why, sizeof(c->why),
					 "lmdb: index entry %" PRIu64 " does not match its event", *index_entries);
			}
		}
		mdb_cursor_close(cur);
		mdb_cursor_close(ic);
		if (rc == MDB_NOTFOUND)
			rc = 0;
		if (!c->bad && *index_entries != c->seen) {
			c->bad = true;
			snprintf(c->why, sizeof(c->why), "lmdb: %" PRIu64 " index entries for %" PRIu64 " events",
				 *index_entries, c->seen);
		}
	}
out:
	mdb_txn_abort(txn);
	return rc;
}

/* ---- commands ---- */

/* Reads o->dir back and checks it holds events first..last of the workload. */
static bool verify_dir(const struct opts *o, uint64_t first, uint64_t last, const char **why)
{
	static char msg[200];
	struct checker c = { 0 };
	uint64_t ix = 0;
	int rc;

	*why = NULL;
	if (wl_init(&c.w, o) != 0)
		return false;
	if (!o->lmdb) {
		struct store *s;
		struct store_recovery rec;
		struct opts q = *o;
		q.sync = SYNC_NONE;
		rc = log_open(&q, checker_record, &c, &s, &rec);
		if (rc == RC_OK)
			store_close(s);
	} else {
		struct lm l;
		struct opts q = *o;
		q.sync = SYNC_NONE;
		rc = lm_open(&q, &l, false);
		if (rc == 0) {
			rc = lm_verify(&l, &c, &ix);
			lm_close(&l);
		}
	}
	if (rc != 0)
		snprintf(msg, sizeof(msg), "cannot read back (%d)", rc);
	else if (c.bad)
		snprintf(msg, sizeof(msg), "%s", c.why);
	else if (c.seen != last - first + 1 || c.w.gseq != last)
		snprintf(msg, sizeof(msg),
			 "read %" PRIu64 " events up to gseq %" PRIu64 ", wrote %" PRIu64 "..%" PRIu64, c.seen,
			 c.w.gseq, first, last);
	else
		msg[0] = '\0';
	wl_fini(&c.w);
	if (msg[0] != '\0')
		*why = msg;
	return msg[0] == '\0';
}

static const char *engine_name(const struct opts *o)
{
	return !o->lmdb	  ? "log"
	       : o->index ? (o->writemap ? "lmdb+index+writemap" : "lmdb+index")
			  : (o->writemap ? "lmdb+writemap" : "lmdb");
}

/* Appends o->events (or what fits in o->seconds) to a fresh o->dir. */
static int cmd_append(const struct opts *o)
{
	struct wl w;
	struct wl_event *evs = calloc(o->batch, sizeof(*evs));
	uint8_t *buf = malloc((size_t)o->batch * seg_record_size(16, 0, PMAX_LIMIT));
	struct store *s = NULL;
	struct store_recovery rec;
	struct lm l = { 0 };
	uint64_t written = 0, batches = 0, first = 1, deleted = 0, n0 = 0, kept, w0, d0, wchar, dirtied;
	double busy = 0, t0, c0, wall, cpu;
	bool ok = true;
	const char *why = NULL;
	int rc = 0;
	struct du u;
	struct store_stats st = { 0 };

	if (evs == NULL || buf == NULL || wl_init(&w, o) != 0)
		return 1;
	rm_rf(o->dir);
	if (!o->lmdb)
		rc = log_open(o, count_record, &n0, &s, &rec);
	else
		rc = lm_open(o, &l, o->index);
	if (rc != 0) {
		fprintf(stderr, "level=error msg=\"cannot open the store\" dir=%s rc=%d\n", o->dir, rc);
		return 1;
	}
	w0 = proc_io("wchar");
	d0 = proc_io("write_bytes");
	t0 = now_s();
	c0 = cpu_s();
	while (written < o->events && (o->seconds <= 0 || now_s() - t0 < o->seconds)) {
		unsigned n = o->events - written < o->batch ? (unsigned)(o->events - written) : o->batch;
		double b0;

		for (unsigned i = 0; i < n; i++)
			wl_next(&w, &evs[i]);
		b0 = now_s();
		if (!o->lmdb) {
			size_t off = 0;
			for (unsigned i = 0; i < n; i++) {
				struct seg_record r = wl_record(&evs[i]);
				off += seg_encode(buf + off, &r);
			}
			rc = store_append(s, buf, off, evs[0].gseq);
			if (rc == RC_OK && o->sync == SYNC_ALWAYS)
				rc = store_sync(s);
			if (rc == RC_OK && o->retain > 0 && evs[n - 1].gseq > o->retain) {
				uint64_t keep_from = evs[n - 1].gseq - o->retain + 1;
				if (store_trim_due(s, keep_from)) {
					size_t len;
					uint8_t *ck = log_rooms_checkpoint(&w, evs[n - 1].gseq + 1, &len);
					struct store_stats a, b;
					store_stats(s, &a);
					if (ck != NULL)
						store_trim(s, keep_from, ck, len);
					store_stats(s, &b);
					deleted += b.first_gseq - a.first_gseq;
					first = b.first_gseq;
					free(ck);
				}
			}
		} else {
			rc = lm_write_batch(&l, evs, n, o->retain, &first, &deleted);
		}
		busy += now_s() - b0;
		if (rc != 0) {
			fprintf(stderr, "level=error msg=\"append failed\" engine=%s rc=%d (%s)\n", engine_name(o), rc,
				o->lmdb ? mdb_strerror(rc) : rc_strerror(rc));
			ok = false;
			break;
		}
		written += n;
		batches++;
	}
	if (ok && o->sync == SYNC_INTERVAL) {
		/* what the interval has not flushed yet: timed, so a short run pays for all it wrote, as a long one
		 * would */
		double b0 = now_s();
		rc = o->lmdb ? mdb_env_sync(l.env, 1) : store_sync(s);
		busy += now_s() - b0;
		ok = rc == 0;
	}
	wall = now_s() - t0;
	cpu = cpu_s() - c0;
	wchar = proc_io("wchar") - w0;
	dirtied = proc_io("write_bytes") - d0;
	if (!o->lmdb) {
		store_stats(s, &st);
		store_close(s);
	} else {
		st.fsyncs = l.syncs;
		lm_close(&l);
	}
	u = dir_usage(o->dir);
	/* per event the store must hold: with --retain, the newest retain (the log keeps up to a segment more) */
	kept = o->retain > 0 && o->retain < written ? o->retain : written;
	if (ok && o->verify) {
		ok = verify_dir(o, first, written, &why);
		if (!ok)
			fprintf(stderr, "level=error msg=\"read back differs\" engine=%s why=\"%s\"\n", engine_name(o),
				why);
	}
	printf("{\"cmd\":\"append\",\"engine\":\"%s\",\"sync\":\"%s\",\"batch\":%u,\"events\":%" PRIu64
	       ",\"retain\":%" PRIu64 ",\"deleted\":%" PRIu64 ",\"seconds\":%.3f,\"store_seconds\":%.3f"
	       ",\"events_per_s\":%.0f,\"cpu_us_per_event\":%.3f,\"batches\":%" PRIu64 ",\"syncs\":%" PRIu64
	       ",\"write_call_bytes_per_event\":%.1f,\"dirtied_bytes_per_event\":%.1f"
	       ",\"disk_bytes\":%" PRIu64 ",\"apparent_bytes\":%" PRIu64 ",\"disk_bytes_per_event\":%.1f"
	       ",\"peak_rss_kb\":%ld,\"verified\":%s}\n",
	       engine_name(o), sync_names[o->sync], o->batch, written, o->retain, deleted, wall, busy,
	       busy > 0 ? (double)written / busy : 0, written ? cpu * 1e6 / (double)written : 0, batches, st.fsyncs,
	       written ? (double)wchar / (double)written : 0, written ? (double)dirtied / (double)written : 0, u.disk,
	       u.apparent, kept ? (double)u.disk / (double)kept : 0, proc_kb("VmHWM"),
	       !o->verify ? "null"
	       : ok	  ? "true"
			  : "false");
	fflush(stdout);
	free(evs);
	free(buf);
	wl_fini(&w);
	return ok ? 0 : 1;
}

static int decode_only(void *arg, const struct seg_record *r)
{
	*(uint64_t *)arg += r->json_len;
	return 0;
}

struct restore_ctx {
	enum restore_mode mode;
	struct history *h;
	uint64_t sum, events, rooms;
};

static int restore_record(struct restore_ctx *x, const struct seg_record *r)
{
	if (r->type == SEG_REC_EVENT)
		x->events++;
	else
		x->rooms++;
	return x->mode == RESTORE_HISTORY ? history_restore(x->h, r) : decode_only(&x->sum, r);
}

static int log_restore_cb(void *arg, const struct seg_record *r)
{
	return restore_record(arg, r);
}

/* LMDB recovery: events from gseq `from` on, and (tail) each room's last rseq from the index first. */
static int lm_recover(struct lm *l, struct restore_ctx *x, bool tail, uint64_t ring, uint64_t *bad)
{
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	uint64_t first, last, from;
	uint8_t kb[8];
	int rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn);

	if (rc != 0)
		return rc;
	if ((rc = lm_bounds(l, txn, &first, &last)) != 0)
		goto out;
	from = first;
	if (tail) {
		MDB_cursor *ic;
		if (last >= ring && last - ring + 1 > first)
			from = last - ring + 1;
		if ((rc = mdb_cursor_open(txn, l->ix, &ic)) != 0)
			goto out;
		for (rc = mdb_cursor_get(ic, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(ic, &k, &v, MDB_NEXT_NODUP)) {
			struct seg_record r = { .type = SEG_REC_ROOM,
						.room = k.mv_data,
						.room_len = (uint16_t)k.mv_size };
			if ((rc = mdb_cursor_get(ic, &k, &v, MDB_LAST_DUP)) != 0)
				break;
			r.rseq = be64_get(v.mv_data);
			if (restore_record(x, &r) != 0) {
				rc = ENOMEM;
				break;
			}
		}
		mdb_cursor_close(ic);
		if (rc != MDB_NOTFOUND)
			goto out;
	}
	if ((rc = mdb_cursor_open(txn, l->ev, &c)) != 0)
		goto out;
	be64_put(kb, from);
	k.mv_size = 8;
	k.mv_data = kb;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		struct seg_record r;
		size_t used;
		if (seg_decode(v.mv_data, v.mv_size, &r, &used) != SEG_DEC_OK) {
			(*bad)++;
			continue;
		}
		if (restore_record(x, &r) != 0) {
			rc = ENOMEM;
			break;
		}
	}
	mdb_cursor_close(c);
out:
	mdb_txn_abort(txn);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int cmd_recover(const struct opts *o)
{
	struct restore_ctx x = { .mode = o->restore };
	struct du u = dir_usage(o->dir);
	double t0, t_open = 0, t_end, c0;
	uint64_t bad = 0;
	long hwm, anon, file;
	const char *engine = o->lmdb ? "lmdb" : "log";
	int rc;

	if (o->restore == RESTORE_HISTORY) {
		x.h = history_new(1, (size_t)o->ring, (size_t)1 << 40);
		if (x.h == NULL)
			return 1;
	}
	if (o->cold)
		dir_drop_cache(o->dir);
	t0 = now_s();
	c0 = cpu_s();
	if (!o->lmdb) {
		struct store *s;
		struct store_recovery rec;
		struct opts q = *o;
		q.sync = SYNC_NONE;
		rc = log_open(&q, log_restore_cb, &x, &s, &rec);
		t_end = now_s();
		if (rc == RC_OK && x.h != NULL)
			history_restore_next(x.h, rec.next_gseq);
		hwm = proc_kb("VmHWM");
		anon = proc_kb("RssAnon");
		file = proc_kb("RssFile");
		if (rc == RC_OK)
			store_close(s);
	} else {
		struct lm l;
		struct opts q = *o;
		q.sync = SYNC_NONE;
		rc = lm_open(&q, &l, false);
		t_open = now_s();
		if (rc == 0 && l.has_ix)
			engine = "lmdb+index";
		if (rc == 0 && o->tail && !l.has_ix) {
			fprintf(stderr, "level=error msg=\"--tail needs an LMDB written with --index\"\n");
			rc = EINVAL;
		}
		if (rc == 0 && o->restore != RESTORE_OPEN)
			rc = lm_recover(&l, &x, o->tail, o->ring, &bad);
		t_end = now_s();
		hwm = proc_kb("VmHWM");
		anon = proc_kb("RssAnon");
		file = proc_kb("RssFile");
		lm_close(&l);
	}
	printf("{\"cmd\":\"recover\",\"engine\":\"%s\",\"restore\":\"%s\",\"tail\":%s,\"ring\":%" PRIu64
	       ",\"cold\":%s,\"events\":%" PRIu64 ",\"rooms\":%" PRIu64 ",\"ms\":%.1f,\"open_ms\":%.1f"
	       ",\"cpu_ms\":%.1f,\"disk_bytes\":%" PRIu64 ",\"peak_rss_kb\":%ld,\"rss_anon_kb\":%ld"
	       ",\"rss_file_kb\":%ld,\"bad_records\":%" PRIu64 ",\"ok\":%s}\n",
	       engine, restore_names[o->restore], o->tail ? "true" : "false", o->ring, o->cold ? "true" : "false",
	       x.events, x.rooms, (t_end - t0) * 1e3, o->lmdb ? (t_open - t0) * 1e3 : 0, (cpu_s() - c0) * 1e3, u.disk,
	       hwm, anon, file, bad, rc == 0 && bad == 0 ? "true" : "false");
	fflush(stdout);
	history_free(x.h);
	return rc == 0 && bad == 0 ? 0 : 1;
}

struct trim_scan {
	struct wl w; /* rseq per room of what the dir holds */
	uint64_t first, last;
};

static int trim_scan_record(void *arg, const struct seg_record *r)
{
	struct trim_scan *t = arg;

	if (r->type != SEG_REC_EVENT)
		return 0;
	if (t->first == 0)
		t->first = r->gseq;
	t->last = r->gseq;
	return 0;
}

/* Deletes the oldest events down to o->keep, then appends o->reappend more. */
static int cmd_trim(const struct opts *o)
{
	struct trim_scan t = { 0 };
	struct du before, after, again;
	uint64_t deleted = 0, first_after = 0, txns = 0;
	double t0, ms;
	int rc = 0;
	bool ok = true;
	const char *why = NULL;
	struct opts q = *o;
	struct wl_event *evs = calloc(256, sizeof(*evs));
	uint8_t *buf = malloc(256 * seg_record_size(16, 0, PMAX_LIMIT));

	q.sync = SYNC_NONE;
	if (evs == NULL || buf == NULL || wl_init(&t.w, o) != 0)
		return 1;
	before = dir_usage(o->dir);
	if (!o->lmdb) {
		struct store *s;
		struct store_recovery rec;
		struct store_stats a, b;
		size_t len;
		uint8_t *ck;

		if ((rc = log_open(&q, trim_scan_record, &t, &s, &rec)) != RC_OK)
			return 1;
		while (t.w.gseq < t.last)
			wl_skip(&t.w);
		ck = log_rooms_checkpoint(&t.w, t.last + 1, &len);
		store_stats(s, &a);
		t0 = now_s();
		if (ck != NULL && t.last >= o->keep)
			store_trim(s, t.last - o->keep + 1, ck, len);
		ms = (now_s() - t0) * 1e3;
		store_stats(s, &b);
		deleted = b.first_gseq - a.first_gseq;
		first_after = b.first_gseq;
		free(ck);
		after = dir_usage(o->dir);
		for (uint64_t done = 0; done < o->reappend && rc == RC_OK;) {
			unsigned n = o->reappend - done < 256 ? (unsigned)(o->reappend - done) : 256;
			size_t off = 0;
			for (unsigned i = 0; i < n; i++) {
				struct seg_record r;
				wl_next(&t.w, &evs[i]);
				r = wl_record(&evs[i]);
				off += seg_encode(buf + off, &r);
			}
			rc = store_append(s, buf, off, evs[0].gseq);
			done += n;
		}
		store_close(s);
	} else {
		struct lm l;
		MDB_txn *txn;
		uint64_t first = 0, last = 0;

		if ((rc = lm_open(&q, &l, false)) != 0)
			return 1;
		if ((rc = mdb_txn_begin(l.env, NULL, MDB_RDONLY, &txn)) == 0) {
			rc = lm_bounds(&l, txn, &first, &last);
			mdb_txn_abort(txn);
		}
		t.last = last;
		while (t.w.gseq < last)
			wl_skip(&t.w);
		t0 = now_s();
		while (rc == 0 && last - first + 1 > o->keep) {
			MDB_cursor *c, *ic = NULL;
			uint64_t n = 0;
			if ((rc = mdb_txn_begin(l.env, NULL, 0, &txn)) != 0)
				break;
			rc = mdb_cursor_open(txn, l.ev, &c);
			if (rc == 0 && l.has_ix)
				rc = mdb_cursor_open(txn, l.ix, &ic);
			while (rc == 0 && n < o->txn_deletes && last - first + 1 > o->keep) {
				rc = lm_delete_oldest(c, ic);
				first++;
				n++;
			}
			if (rc == 0)
				rc = mdb_txn_commit(txn);
			else
				mdb_txn_abort(txn);
			deleted += rc == 0 ? n : 0;
			txns++;
		}
		ms = (now_s() - t0) * 1e3;
		first_after = first;
		after = dir_usage(o->dir);
		for (uint64_t done = 0; done < o->reappend && rc == 0;) {
			unsigned n = o->reappend - done < 256 ? (unsigned)(o->reappend - done) : 256;
			for (unsigned i = 0; i < n; i++)
				wl_next(&t.w, &evs[i]);
			rc = lm_write_batch(&l, evs, n, 0, &first, &deleted);
			done += n;
		}
		lm_close(&l);
	}
	again = dir_usage(o->dir);
	if (rc != 0) {
		fprintf(stderr, "level=error msg=\"trim failed\" engine=%s rc=%d\n", o->lmdb ? "lmdb" : "log", rc);
		ok = false;
	}
	if (ok && o->verify) {
		ok = verify_dir(o, first_after, t.w.gseq, &why);
		if (!ok)
			fprintf(stderr, "level=error msg=\"read back differs after trim\" engine=%s why=\"%s\"\n",
				o->lmdb ? "lmdb" : "log", why);
	}
	printf("{\"cmd\":\"trim\",\"engine\":\"%s\",\"keep\":%" PRIu64 ",\"deleted\":%" PRIu64 ",\"ms\":%.1f"
	       ",\"txns\":%" PRIu64 ",\"disk_before\":%" PRIu64 ",\"disk_after\":%" PRIu64
	       ",\"apparent_after\":%" PRIu64 ",\"reappended\":%" PRIu64 ",\"disk_after_reappend\":%" PRIu64
	       ",\"verified\":%s}\n",
	       o->lmdb ? "lmdb" : "log", o->keep, deleted, ms, txns, before.disk, after.disk, after.apparent,
	       o->reappend, again.disk,
	       !o->verify ? "null"
	       : ok	  ? "true"
			  : "false");
	fflush(stdout);
	free(evs);
	free(buf);
	wl_fini(&t.w);
	return ok ? 0 : 1;
}

/* Small runs of every engine and mode, each read back; the ctest. */
static int cmd_check(const struct opts *o)
{
	static const struct {
		bool lmdb, index;
		enum sync_mode sync;
	} runs[] = {
		{ false, false, SYNC_NONE },  { false, false, SYNC_INTERVAL }, { false, false, SYNC_ALWAYS },
		{ true, false, SYNC_NONE },   { true, false, SYNC_INTERVAL },  { true, false, SYNC_NOMETASYNC },
		{ true, false, SYNC_ALWAYS }, { true, true, SYNC_NONE },       { true, true, SYNC_ALWAYS },
	};
	char path[4096];
	int failed = 0;

	if (mkdir(o->dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "level=error msg=\"cannot create\" dir=%s\n", o->dir);
		return 1;
	}
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		struct opts q = *o;
		q.lmdb = runs[i].lmdb;
		q.index = runs[i].index;
		q.sync = runs[i].sync;
		q.verify = true;
		q.segment_bytes = 64 * 1024; /* several segments, so the trim deletes some */
		snprintf(path, sizeof(path), "%s/%s-%s", o->dir, engine_name(&q), sync_names[q.sync]);
		q.dir = path;
		/* append, recover into a real history, trim (+ reappend), append with retention */
		failed |= cmd_append(&q) != 0;
		q.restore = RESTORE_HISTORY;
		q.ring = o->events * 2;
		failed |= cmd_recover(&q) != 0;
		if (q.index) {
			q.tail = true;
			q.ring = o->events / 10 + 1;
			failed |= cmd_recover(&q) != 0;
			q.tail = false;
		}
		q.keep = o->events / 2;
		q.reappend = o->events / 4;
		failed |= cmd_trim(&q) != 0;
		q.retain = o->events / 3;
		failed |= cmd_append(&q) != 0;
		rm_rf(path);
	}
	rmdir(o->dir);
	fprintf(stderr, "level=%s msg=\"check %s\"\n", failed ? "error" : "info", failed ? "FAILED" : "passed");
	return failed ? 1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: roomcast-store-vs-lmdb append|recover|trim|check --dir DIR [options]\n"
		   "  --engine log|lmdb      the broker's log (default) or LMDB\n"
		   "  --index                LMDB: a rooms DBI (room -> rseq|gseq) beside the events\n"
		   "  --writemap             LMDB: MDB_WRITEMAP\n"
		   "  --sync MODE            none|interval|nometasync|always (default none; nometasync: LMDB only)\n"
		   "  --interval-ms N        period of the interval sync (1000)\n"
		   "  --batch N              events per append / transaction (16)\n"
		   "  --events N             events to append (100000)\n"
		   "  --seconds S            stop appending after S seconds (0: no limit)\n"
		   "  --rooms N              rooms (1000)\n"
		   "  --payload-min/max B    event JSON bytes (100..200)\n"
		   "  --segment-bytes B      log segment size (64 MiB, the broker's default)\n"
		   "  --retain K             append: keep only the newest K events (deleting as the broker would)\n"
		   "  --verify               read everything back and compare (exit 1 if it differs)\n"
		   "  --restore MODE         recover: history (default), decode, open (LMDB only)\n"
		   "  --ring N               recover: the history's --history-events (1048576)\n"
		   "  --tail                 recover, LMDB with --index: only the last --ring events + rooms' rseq\n"
		   "  --cold                 recover: drop DIR's files from the page cache first\n"
		   "  --keep K               trim: events to keep\n"
		   "  --reappend M           trim: append M events after it\n"
		   "  --txn-deletes N        trim, LMDB: deletes per transaction (65536)\n"
		   "  --mapsize B            LMDB map size (64 GiB)\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && s[0] != '-';
}

int main(int argc, char **argv)
{
	enum {
		OPT_ENGINE = 256,
		OPT_INDEX,
		OPT_WRITEMAP,
		OPT_SYNC,
		OPT_INTERVAL,
		OPT_BATCH,
		OPT_EVENTS,
		OPT_SECONDS,
		OPT_ROOMS,
		OPT_PMIN,
		OPT_PMAX,
		OPT_SEGMENT,
		OPT_RETAIN,
		OPT_VERIFY,
		OPT_RESTORE,
		OPT_RING,
		OPT_TAIL,
		OPT_COLD,
		OPT_KEEP,
		OPT_REAPPEND,
		OPT_TXNDEL,
		OPT_MAPSIZE,
		OPT_DIR,
		OPT_HELP
	};
	static const struct option longopts[] = {
		{ "engine", required_argument, NULL, OPT_ENGINE },
		{ "index", no_argument, NULL, OPT_INDEX },
		{ "writemap", no_argument, NULL, OPT_WRITEMAP },
		{ "sync", required_argument, NULL, OPT_SYNC },
		{ "interval-ms", required_argument, NULL, OPT_INTERVAL },
		{ "batch", required_argument, NULL, OPT_BATCH },
		{ "events", required_argument, NULL, OPT_EVENTS },
		{ "seconds", required_argument, NULL, OPT_SECONDS },
		{ "rooms", required_argument, NULL, OPT_ROOMS },
		{ "payload-min", required_argument, NULL, OPT_PMIN },
		{ "payload-max", required_argument, NULL, OPT_PMAX },
		{ "segment-bytes", required_argument, NULL, OPT_SEGMENT },
		{ "retain", required_argument, NULL, OPT_RETAIN },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ "restore", required_argument, NULL, OPT_RESTORE },
		{ "ring", required_argument, NULL, OPT_RING },
		{ "tail", no_argument, NULL, OPT_TAIL },
		{ "cold", no_argument, NULL, OPT_COLD },
		{ "keep", required_argument, NULL, OPT_KEEP },
		{ "reappend", required_argument, NULL, OPT_REAPPEND },
		{ "txn-deletes", required_argument, NULL, OPT_TXNDEL },
		{ "mapsize", required_argument, NULL, OPT_MAPSIZE },
		{ "dir", required_argument, NULL, OPT_DIR },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = {
		.sync = SYNC_NONE,
		.restore = RESTORE_HISTORY,
		.batch = 16,
		.rooms = 1000,
		.pmin = 100,
		.pmax = 200,
		.interval_ms = 1000,
		.events = 100000,
		.ring = 1048576,
		.txn_deletes = 65536,
		.segment_bytes = 64u * 1024 * 1024,
		.mapsize = (size_t)64 << 30,
	};
	int c;

	if (argc < 2 || argv[1][0] == '-') {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	o.cmd = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		uint64_t v = 0;
		bool num = c == OPT_INTERVAL || c == OPT_BATCH || c == OPT_EVENTS || c == OPT_ROOMS || c == OPT_PMIN ||
			   c == OPT_PMAX || c == OPT_SEGMENT || c == OPT_RETAIN || c == OPT_RING || c == OPT_KEEP ||
			   c == OPT_REAPPEND || c == OPT_TXNDEL || c == OPT_MAPSIZE;
		if (num && !parse_u64(optarg, &v)) {
			fprintf(stderr, "roomcast-store-vs-lmdb: not a number: %s\n", optarg);
			return 2;
		}
		switch (c) {
		case OPT_ENGINE:
			if (strcmp(optarg, "log") != 0 && strcmp(optarg, "lmdb") != 0) {
				fprintf(stderr, "roomcast-store-vs-lmdb: --engine must be log or lmdb\n");
				return 2;
			}
			o.lmdb = strcmp(optarg, "lmdb") == 0;
			break;
		case OPT_INDEX: o.index = true; break;
		case OPT_WRITEMAP: o.writemap = true; break;
		case OPT_SYNC:
			for (c = 0; c < 4 && strcmp(optarg, sync_names[c]) != 0; c++)
				;
			if (c == 4) {
				fprintf(stderr, "roomcast-store-vs-lmdb: --sync must be none, interval, nometasync or "
						"always\n");
				return 2;
			}
			o.sync = (enum sync_mode)c;
			break;
		case OPT_INTERVAL: o.interval_ms = (unsigned)v; break;
		case OPT_BATCH: o.batch = (unsigned)v; break;
		case OPT_EVENTS: o.events = v; break;
		case OPT_SECONDS: o.seconds = atof(optarg); break;
		case OPT_ROOMS: o.rooms = (unsigned)v; break;
		case OPT_PMIN: o.pmin = (unsigned)v; break;
		case OPT_PMAX: o.pmax = (unsigned)v; break;
		case OPT_SEGMENT: o.segment_bytes = (size_t)v; break;
		case OPT_RETAIN: o.retain = v; break;
		case OPT_VERIFY: o.verify = true; break;
		case OPT_RESTORE:
			for (c = 0; c < 3 && strcmp(optarg, restore_names[c]) != 0; c++)
				;
			if (c == 3) {
				fprintf(stderr, "roomcast-store-vs-lmdb: --restore must be history, decode or open\n");
				return 2;
			}
			o.restore = (enum restore_mode)c;
			break;
		case OPT_RING: o.ring = v; break;
		case OPT_TAIL: o.tail = true; break;
		case OPT_COLD: o.cold = true; break;
		case OPT_KEEP: o.keep = v; break;
		case OPT_REAPPEND: o.reappend = v; break;
		case OPT_TXNDEL: o.txn_deletes = v; break;
		case OPT_MAPSIZE: o.mapsize = (size_t)v; break;
		case OPT_DIR: o.dir = optarg; break;
		case OPT_HELP: usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (o.dir == NULL || o.batch == 0 || o.batch > 65536 || o.rooms == 0 || o.rooms > 10000 || o.pmin < 80 ||
	    o.pmax < o.pmin || o.pmax > PMAX_LIMIT || o.interval_ms == 0 || o.segment_bytes < 4096 || o.ring == 0 ||
	    o.txn_deletes == 0 || (!o.lmdb && (o.sync == SYNC_NOMETASYNC || o.index || o.writemap)) ||
	    (!o.lmdb && o.restore == RESTORE_OPEN)) {
		fprintf(stderr, "roomcast-store-vs-lmdb: bad options (--dir is required; --help lists them)\n");
		return 2;
	}
	rc_log_set_level(RC_LOG_WARN);
	if (strcmp(o.cmd, "append") == 0)
		return cmd_append(&o);
	if (strcmp(o.cmd, "recover") == 0)
		return cmd_recover(&o);
	if (strcmp(o.cmd, "trim") == 0)
		return o.keep > 0 ? cmd_trim(&o) : 2;
	if (strcmp(o.cmd, "check") == 0)
		return cmd_check(&o);
	usage(stderr);
	return 2;
}
