#define _GNU_SOURCE /* O_CLOEXEC, fdatasync, pwrite */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

struct seg {
	uint64_t base; /* first gseq */
	uint64_t size; /* bytes, header included */
};

struct store {
	char *dir;
	int dirfd, lockfd;
	enum store_fsync fsync;
	int interval_ms;
	size_t segment_bytes;
	uint64_t epoch;

	/* under the history's write lock */
	struct seg *segs; /* oldest first; the last is written */
	size_t nsegs, capsegs;
	int fd; /* the last segment */

	pthread_mutex_t mu; /* guards what follows */
	pthread_cond_t cv;
	uint64_t wpos, synced; /* bytes appended / known on disk, since start */
	bool syncing;	       /* a caller runs fdatasync (the fd must not close meanwhile) */
	bool stop;
	uint64_t nsegs_seen, first_seen; /* nsegs and segs[0].base, for stats */
	uint64_t bytes, fsyncs, fsync_us_total, fsync_us_max, fsync_us_last, write_errors, fsync_errors;
	double recovery_ms;
	pthread_t syncer;
	bool has_syncer;
};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

bool store_fsync_parse(const char *s, enum store_fsync *out)
{
	if (strcmp(s, "none") == 0)
		*out = STORE_FSYNC_NONE;
	else if (strcmp(s, "interval") == 0)
		*out = STORE_FSYNC_INTERVAL;
	else if (strcmp(s, "always") == 0)
		*out = STORE_FSYNC_ALWAYS;
	else
		return false;
	return true;
}

const char *store_fsync_name(enum store_fsync f)
{
	return f == STORE_FSYNC_NONE ? "none" : f == STORE_FSYNC_INTERVAL ? "interval" : "always";
}

static void seg_name(char *buf, size_t len, uint64_t base)
{
	snprintf(buf, len, "%020" PRIu64 ".seg", base);
}

/* Writes all of buf at off; 0 or errno. */
static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			return EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Writes a small file atomically: name.tmp, fsync, rename, fsync the directory. 0 or errno. */
static int write_file_atomic(struct store *s, const char *name, const void *buf, size_t len)
{
	char tmp[64];
	int fd, err;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return errno;
	err = pwrite_all(fd, buf, len, 0);
	if (err == 0 && fsync(fd) != 0)
		err = errno;
	close(fd);
	if (err == 0 && renameat(s->dirfd, tmp, s->dirfd, name) != 0)
		err = errno;
	if (err != 0) {
		unlinkat(s->dirfd, tmp, 0);
		return err;
	}
	fsync(s->dirfd);
	return 0;
}

/* Reads the whole small file name into a malloc'd buffer; RC_ENOTFOUND when it does not exist. */
static int read_file(struct store *s, const char *name, uint8_t **out, size_t *len)
{
	int fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *buf;
	size_t got = 0;

	if (fd < 0)
		return errno == ENOENT ? RC_ENOTFOUND : RC_EIO;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return RC_EIO;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		close(fd);
		return RC_ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*out = buf;
	*len = got;
	return RC_OK;
}

static int segs_push(struct store *s, uint64_t base, uint64_t size)
{
	if (s->nsegs == s->capsegs) {
		size_t cap = s->capsegs ? s->capsegs * 2 : 16;
		struct seg *p = realloc(s->segs, cap * sizeof(*p));
		if (p == NULL)
			return RC_ENOMEM;
		s->segs = p;
		s->capsegs = cap;
	}
	s->segs[s->nsegs].base = base;
	s->segs[s->nsegs].size = size;
	s->nsegs++;
	return RC_OK;
}

static int seg_cmp(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;
	return x->base < y->base ? -1 : x->base > y->base;
}

/* Lists DIR/<20 digits>.seg into s->segs, sorted. */
static int list_segments(struct store *s)
{
	int fd = dup(s->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	int rv = RC_OK;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return RC_EIO;
	}
	while ((e = readdir(d)) != NULL && rv == RC_OK) {
		size_t n = strlen(e->d_name);
		char *end;
		uint64_t base;

		if (n != 24 || strcmp(e->d_name + 20, ".seg") != 0)
			continue;
		errno = 0;
		base = strtoull(e->d_name, &end, 10);
		if (end != e->d_name + 20 || errno != 0)
			continue;
		rv = segs_push(s, base, 0);
	}
	closedir(d);
	if (s->nsegs > 1)
		qsort(s->segs, s->nsegs, sizeof(*s->segs), seg_cmp);
	return rv;
}

static int read_epoch(struct store *s, uint64_t *epoch)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rv = read_file(s, "epoch", &buf, &len);
	char *end;

	if (rv != RC_OK)
		return rv;
	buf[len] = '\0';
	errno = 0;
	*epoch = strtoull((char *)buf, &end, 16);
	if (end == (char *)buf || *end != '\n' || errno != 0 || *epoch == 0 || *epoch > UINT32_MAX)
		rv = RC_EPROTO;
	free(buf);
	return rv;
}

static int write_epoch(struct store *s, uint64_t epoch)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%016" PRIx64 "\n", epoch);
	int err = write_file_atomic(s, "epoch", buf, (size_t)n);

	if (err != 0) {
		rc_log_error("cannot write the epoch", "dir=%s err=\"%s\"", s->dir, strerror(err));
		return RC_EIO;
	}
	s->epoch = epoch;
	return RC_OK;
}

static void corrupt_msg(struct store *s, const char *file, uint64_t off, const char *why)
{
	rc_log_error("corrupt data in the log: refusing to start (--repair cuts the log there and starts a new epoch)",
		     "file=%s/%s offset=%" PRIu64 " why=\"%s\"", s->dir, file, off, why);
}

/* Loads DIR/rooms, if any, into fn. */
static int load_rooms(struct store *s, const struct store_config *cfg, store_record_fn fn, void *arg,
		      struct store_recovery *rec)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	uint64_t base;
	struct seg_scan sc;
	int rv = read_file(s, "rooms", &buf, &len);

	if (rv == RC_ENOTFOUND)
		return RC_OK;
	if (rv != RC_OK) {
		rc_log_error("cannot read the rooms checkpoint", "dir=%s", s->dir);
		return rv;
	}
	if (len < SEG_HDR_SIZE || !seg_get_header(buf, &base)) {
		sc.status = SEG_SCAN_CORRUPT;
		sc.why = "bad header";
		sc.end = 0;
	} else {
		rv = seg_scan(buf + SEG_HDR_SIZE, len - SEG_HDR_SIZE, 0, fn, arg, &sc);
		rec->rooms += sc.records;
		if (base > rec->next_gseq)
			rec->next_gseq = base;
	}
	free(buf);
	if (rv != 0)
		return RC_ENOMEM;
	if (sc.status != SEG_SCAN_END) {
		/* written whole then renamed: any fault is corruption */
		corrupt_msg(s, "rooms", sc.end + SEG_HDR_SIZE, sc.why);
		if (!cfg->repair)
			return RC_EPROTO;
		rec->repaired = true;
		rc_log_warn("--repair: ignoring the rooms checkpoint (the new epoch starts rooms' sequences afresh)",
			    NULL);
	}
	return RC_OK;
}

/* Drops segments i.. (from --repair). */
static void drop_segments_from(struct store *s, size_t i, struct store_recovery *rec)
{
	char name[32];

	for (size_t k = i; k < s->nsegs; k++) {
		struct stat st;
		seg_name(name, sizeof(name), s->segs[k].base);
		if (fstatat(s->dirfd, name, &st, 0) == 0)
			rec->cut_bytes += (uint64_t)st.st_size;
		rc_log_warn("--repair: deleting a segment after the cut", "file=%s/%s", s->dir, name);
		unlinkat(s->dirfd, name, 0);
	}
	s->nsegs = i;
}

struct scan_ctx {
	store_record_fn fn;
	void *arg;
	struct store_recovery *rec;
};

static int scan_record(void *arg, const struct seg_record *r)
{
	struct scan_ctx *c = arg;

	if (r->type != SEG_REC_EVENT)
		return 0;
	c->rec->events++;
	return c->fn(c->arg, r);
}

/*
 * Scans segment i; returns RC_OK (possibly after cutting a torn tail or a
 * --repair cut, which drops the segments after it), RC_EPROTO, RC_EIO.
 */
static int scan_segment(struct store *s, size_t i, const struct store_config *cfg, struct scan_ctx *ctx)
{
	char name[32];
	struct seg *g = &s->segs[i];
	bool last = i + 1 == s->nsegs;
	struct store_recovery *rec = ctx->rec;
	struct seg_scan sc = { 0 };
	uint64_t base = 0;
	struct stat st;
	uint8_t *map = NULL;
	int fd, rv = RC_OK;
	const char *why = NULL;
	uint64_t bad_at = 0;

	seg_name(name, sizeof(name), g->base);
	fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		rc_log_error("cannot open a segment", "file=%s/%s err=\"%s\"", s->dir, name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return RC_EIO;
	}
	if (st.st_size > 0) {
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			close(fd);
			return RC_EIO;
		}
		madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
	}
	if ((size_t)st.st_size < SEG_HDR_SIZE) {
		/* a roll that crashed before its header was written: nothing in it */
		if (!last) {
			why = "segment shorter than its header";
		} else {
			rec->cut_bytes += (uint64_t)st.st_size;
			close(fd);
			if (map != NULL)
				munmap(map, (size_t)st.st_size);
			unlinkat(s->dirfd, name, 0);
			s->nsegs--;
			rc_log_warn("removed a segment whose header was never written", "file=%s/%s", s->dir, name);
			return RC_OK;
		}
	} else if (!seg_get_header(map, &base) || base != g->base) {
		why = "bad segment header";
	} else if (rec->next_gseq != 0 && i > 0 && base != rec->next_gseq) {
		why = "segment does not follow the previous one (a segment is missing)";
	} else {
		uint64_t expect = i > 0 ? rec->next_gseq : base;
		rv = seg_scan(map + SEG_HDR_SIZE, (size_t)st.st_size - SEG_HDR_SIZE, expect, scan_record, ctx, &sc);
		if (rv != 0) {
			rv = RC_ENOMEM;
			goto out;
		}
		rec->next_gseq = sc.next_gseq;
		g->size = SEG_HDR_SIZE + sc.end;
		if (sc.status == SEG_SCAN_TORN && last) {
			rec->cut_bytes += (uint64_t)st.st_size - g->size;
			rc_log_warn("cut a torn tail off the log (the end of a write a crash interrupted)",
				    "file=%s/%s offset=%" PRIu64 " bytes=%" PRIu64, s->dir, name, g->size,
				    (uint64_t)st.st_size - g->size);
			if (ftruncate(fd, (off_t)g->size) != 0)
				rv = RC_EIO;
		} else if (sc.status != SEG_SCAN_END) {
			why = sc.why;
			bad_at = g->size;
		}
	}
	if (why != NULL) {
		corrupt_msg(s, name, bad_at, why);
		if (!cfg->repair) {
			rv = RC_EPROTO;
			goto out;
		}
		rec->repaired = true;
		if (bad_at < SEG_HDR_SIZE) {
			drop_segments_from(s, i, rec); /* counts this segment's bytes in cut_bytes */
		} else {
			rec->cut_bytes += (uint64_t)st.st_size - bad_at;
			rc_log_warn("--repair: cut the log", "file=%s/%s offset=%" PRIu64 " bytes_dropped=%" PRIu64,
				    s->dir, name, bad_at, (uint64_t)st.st_size - bad_at);
			if (ftruncate(fd, (off_t)bad_at) != 0)
				rv = RC_EIO;
			drop_segments_from(s, i + 1, rec);
		}
	}
out:
	if (map != NULL)
		munmap(map, (size_t)st.st_size);
	close(fd);
	return rv;
}

/* Creates the segment for base_gseq and makes it the one written. RC_EIO leaves the store as it was. */
static int create_segment(struct store *s, uint64_t base)
{
	char name[32];
	uint8_t hdr[SEG_HDR_SIZE];
	int fd, err;

	seg_name(name, sizeof(name), base);
	fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return errno;
	seg_put_header(hdr, base);
	err = pwrite_all(fd, hdr, sizeof(hdr), 0);
	if (err == 0 && segs_push(s, base, SEG_HDR_SIZE) != RC_OK)
		err = ENOMEM;
	if (err != 0) {
		close(fd);
		unlinkat(s->dirfd, name, 0);
		return err;
	}
	pthread_mutex_lock(&s->mu);
	/* a sync in progress writes the old fd: let it finish before it closes */
	while (s->syncing)
		pthread_cond_wait(&s->cv, &s->mu);
	if (s->fd >= 0) {
		if (s->fsync != STORE_FSYNC_NONE) {
			/* everything appended so far is in the old segment: on disk now */
			if (fdatasync(s->fd) == 0)
				s->synced = s->wpos;
			else
				s->fsync_errors++;
		}
		close(s->fd);
	}
	s->fd = fd;
	s->bytes += SEG_HDR_SIZE;
	s->nsegs_seen = s->nsegs;
	s->first_seen = s->segs[0].base;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (s->fsync != STORE_FSYNC_NONE)
		fsync(s->dirfd); /* the new name */
	return 0;
}

static void *syncer_main(void *arg)
{
	struct store *s = arg;

	pthread_mutex_lock(&s->mu);
	while (!s->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += s->interval_ms / 1000;
		ts.tv_nsec += (long)(s->interval_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
		if (s->stop)
			break;
		pthread_mutex_unlock(&s->mu);
		if (store_sync(s) != RC_OK)
			rc_log_warn("fdatasync of the log failed", "dir=%s", s->dir);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

int store_open(const struct store_config *cfg, uint64_t new_epoch, store_record_fn fn, void *arg, struct store **out,
	       struct store_recovery *rec)
{
	struct store *s = calloc(1, sizeof(*s));
	uint64_t t0 = now_us();
	struct scan_ctx ctx = { fn, arg, rec };
	int rv = RC_EIO;

	memset(rec, 0, sizeof(*rec));
	if (s == NULL)
		return RC_ENOMEM;
	s->dirfd = s->lockfd = s->fd = -1;
	s->fsync = cfg->fsync;
	s->interval_ms = cfg->interval_ms > 0 ? cfg->interval_ms : 1000;
	s->segment_bytes = cfg->segment_bytes;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->dir = strdup(cfg->dir);
	if (s->dir == NULL) {
		rv = RC_ENOMEM;
		goto fail;
	}
	if (mkdir(cfg->dir, 0755) != 0 && errno != EEXIST) {
		rc_log_error("cannot create the data dir", "dir=%s err=\"%s\"", cfg->dir, strerror(errno));
		goto fail;
	}
	s->dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		rc_log_error("cannot open the data dir", "dir=%s err=\"%s\"", cfg->dir, strerror(errno));
		goto fail;
	}
	s->lockfd = openat(s->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->lockfd < 0 || flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
		rc_log_error("the data dir is in use by another broker (or cannot be locked)", "dir=%s err=\"%s\"",
			     cfg->dir, strerror(errno));
		goto fail;
	}
	unlinkat(s->dirfd, "epoch.tmp", 0);
	unlinkat(s->dirfd, "rooms.tmp", 0);
	if ((rv = list_segments(s)) != RC_OK)
		goto fail;
	rv = read_epoch(s, &s->epoch);
	if (rv == RC_ENOTFOUND && s->nsegs == 0) {
		rec->fresh = true;
	} else if (rv != RC_OK) {
		corrupt_msg(s, "epoch", 0, rv == RC_ENOTFOUND ? "missing while segments exist" : "unreadable");
		if (!cfg->repair) {
			rv = RC_EPROTO;
			goto fail;
		}
		rec->repaired = true;
	}
	if ((rv = load_rooms(s, cfg, fn, arg, rec)) != RC_OK)
		goto fail;
	for (size_t i = 0; i < s->nsegs; i++) {
		size_t before = s->nsegs;
		if ((rv = scan_segment(s, i, cfg, &ctx)) != RC_OK)
			goto fail;
		if (s->nsegs < before && i >= s->nsegs)
			break; /* this segment (and those after) went */
		s->bytes += s->segs[i].size;
	}
	if (rec->next_gseq == 0)
		rec->next_gseq = 1;
	if (rec->fresh || rec->repaired) {
		if ((rv = write_epoch(s, new_epoch)) != RC_OK)
			goto fail;
	}
	/* the last segment is written on; none yet: a first one */
	if (s->nsegs == 0) {
		int err = create_segment(s, rec->next_gseq);
		if (err != 0) {
			rc_log_error("cannot create a segment", "dir=%s err=\"%s\"", s->dir, strerror(err));
			rv = RC_EIO;
			goto fail;
		}
	} else {
		char name[32];
		seg_name(name, sizeof(name), s->segs[s->nsegs - 1].base);
		s->fd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC);
		if (s->fd < 0) {
			rc_log_error("cannot open a segment", "file=%s/%s err=\"%s\"", s->dir, name, strerror(errno));
			rv = RC_EIO;
			goto fail;
		}
	}
	if (s->fsync == STORE_FSYNC_INTERVAL) {
		if (pthread_create(&s->syncer, NULL, syncer_main, s) != 0) {
			rv = RC_ENOMEM;
			goto fail;
		}
		s->has_syncer = true;
	}
	s->nsegs_seen = s->nsegs;
	s->first_seen = s->segs[0].base;
	rec->ms = (double)(now_us() - t0) / 1000.0;
	s->recovery_ms = rec->ms;
	*out = s;
	return RC_OK;
fail:
	store_close(s);
	return rv;
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (s->has_syncer) {
		pthread_mutex_lock(&s->mu);
		s->stop = true;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->syncer, NULL);
	}
	if (s->fd >= 0) {
		if (s->fsync != STORE_FSYNC_NONE)
			fdatasync(s->fd);
		close(s->fd);
	}
	if (s->lockfd >= 0)
		close(s->lockfd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s->segs);
	free(s->dir);
	free(s);
}

uint64_t store_epoch(const struct store *s)
{
	return s->epoch;
}

enum store_fsync store_fsync_mode(const struct store *s)
{
	return s->fsync;
}

int store_append(struct store *s, const uint8_t *buf, size_t len, uint64_t first_gseq)
{
	struct seg *g = &s->segs[s->nsegs - 1];
	int err;

	if (g->size > SEG_HDR_SIZE && g->size + len > s->segment_bytes) {
		err = create_segment(s, first_gseq);
		if (err != 0) {
			pthread_mutex_lock(&s->mu);
			s->write_errors++;
			pthread_mutex_unlock(&s->mu);
			rc_log_warn("cannot create a segment: publishes fail until it can", "dir=%s err=\"%s\"", s->dir,
				    strerror(err));
			return RC_EIO;
		}
		g = &s->segs[s->nsegs - 1];
	}
	err = pwrite_all(s->fd, buf, len, (off_t)g->size);
	if (err != 0) {
		/* nothing half written stays: the next append goes where this one began */
		if (ftruncate(s->fd, (off_t)g->size) != 0)
			rc_log_warn("cannot cut a failed write off the log", "err=\"%s\"", strerror(errno));
		pthread_mutex_lock(&s->mu);
		s->write_errors++;
		pthread_mutex_unlock(&s->mu);
		rc_log_warn("cannot write the log: publishes fail until it can", "dir=%s err=\"%s\"", s->dir,
			    strerror(err));
		return RC_EIO;
	}
	g->size += len;
	pthread_mutex_lock(&s->mu);
	s->wpos += len;
	s->bytes += len;
	pthread_mutex_unlock(&s->mu);
	return RC_OK;
}

int store_sync(struct store *s)
{
	uint64_t ticket, target, t0, us;
	int fd, rv = RC_OK;

	pthread_mutex_lock(&s->mu);
	ticket = s->wpos;
	while (s->synced < ticket) {
		if (s->syncing) {
			/* someone's fdatasync is running: the next one covers us too (group commit) */
			pthread_cond_wait(&s->cv, &s->mu);
			continue;
		}
		s->syncing = true;
		target = s->wpos;
		fd = s->fd;
		pthread_mutex_unlock(&s->mu);
		t0 = now_us();
		rv = fdatasync(fd) == 0 ? RC_OK : RC_EIO;
		us = now_us() - t0;
		pthread_mutex_lock(&s->mu);
		s->syncing = false;
		s->fsyncs++;
		s->fsync_us_total += us;
		s->fsync_us_last = us;
		if (us > s->fsync_us_max)
			s->fsync_us_max = us;
		if (rv == RC_OK && target > s->synced)
			s->synced = target;
		if (rv != RC_OK)
			s->fsync_errors++;
		pthread_cond_broadcast(&s->cv);
		if (rv != RC_OK)
			break;
	}
	pthread_mutex_unlock(&s->mu);
	return rv;
}

bool store_trim_due(const struct store *s, uint64_t first_gseq)
{
	return s->nsegs > 1 && s->segs[1].base <= first_gseq;
}

void store_trim(struct store *s, uint64_t first_gseq, const uint8_t *rooms, size_t len)
{
	size_t k = 0;
	int err;

	if (!store_trim_due(s, first_gseq))
		return;
	err = write_file_atomic(s, "rooms", rooms, len);
	if (err != 0) {
		rc_log_warn("cannot write the rooms checkpoint: old segments stay", "dir=%s err=\"%s\"", s->dir,
			    strerror(err));
		return;
	}
	while (k + 1 < s->nsegs && s->segs[k + 1].base <= first_gseq) {
		char name[32];
		seg_name(name, sizeof(name), s->segs[k].base);
		if (unlinkat(s->dirfd, name, 0) != 0) {
			rc_log_warn("cannot delete an old segment", "file=%s/%s err=\"%s\"", s->dir, name,
				    strerror(errno));
			break;
		}
		pthread_mutex_lock(&s->mu);
		s->bytes -= s->segs[k].size;
		pthread_mutex_unlock(&s->mu);
		k++;
	}
	memmove(s->segs, s->segs + k, (s->nsegs - k) * sizeof(*s->segs));
	s->nsegs -= k;
	pthread_mutex_lock(&s->mu);
	s->nsegs_seen = s->nsegs;
	s->first_seen = s->segs[0].base;
	pthread_mutex_unlock(&s->mu);
}

void store_stats(struct store *s, struct store_stats *st)
{
	pthread_mutex_lock(&s->mu);
	st->bytes = s->bytes;
	st->fsyncs = s->fsyncs;
	st->fsync_us_total = s->fsync_us_total;
	st->fsync_us_max = s->fsync_us_max;
	st->fsync_us_last = s->fsync_us_last;
	st->write_errors = s->write_errors;
	st->fsync_errors = s->fsync_errors;
	st->recovery_ms = s->recovery_ms;
	st->segments = s->nsegs_seen;
	st->first_gseq = s->first_seen;
	pthread_mutex_unlock(&s->mu);
}
