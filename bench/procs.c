#include "procs.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"

#define PROCS_MAX 64
#define PROCS_GRACE_MS 30000 /* after the run's duration and connect timeout */

/* Child → parent messages: one byte, then for MSG_STATS the struct's bytes. */
enum { PROCS_MSG_READY = 'R', PROCS_MSG_STATS = 'S' };

struct procs_child {
	pid_t pid;
	int fd;             /* read end, -1 once closed */
	bool ready;
	bool in_stats;      /* reading the struct */
	size_t got;         /* bytes of the struct read so far */
	struct rb_sub_stats *stats;
};

/* Writes all of buf to fd. Returns 0 or a negative errno. */
static int procs_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void procs_child_ready(void *arg)
{
	const int *fd = arg;
	char m = PROCS_MSG_READY;

	(void)procs_write_all(*fd, &m, 1);
}

/* The child's whole life: run its share, report, exit. */
static void procs_child_main(const struct rb_sub_opts *opts, unsigned k, unsigned nprocs, int fd)
{
	struct rb_sub_opts o = *opts;
	uint32_t base = opts->conns / nprocs, extra = opts->conns % nprocs;
	struct rb_sub_stats *st = malloc(sizeof(*st));
	char m = PROCS_MSG_STATS;
	int r;

	o.conns = base + (k < extra ? 1 : 0);
	o.first_index = opts->first_index + k * base + (k < extra ? k : extra);
	o.connect_rate = opts->connect_rate / nprocs;
	o.proc = k;
	if (st == NULL)
		_exit(1);
	rb_sub_stats_init(st);
	r = rb_sub_run(&o, st, procs_child_ready, &fd);
	if (r < 0) {
		fprintf(stderr, "level=error msg=\"subscriber setup failed\" proc=%u err=%s\n", k,
			strerror(-r));
		_exit(1);
	}
	if (procs_write_all(fd, &m, 1) < 0 || procs_write_all(fd, st, sizeof(*st)) < 0)
		_exit(1);
	_exit(0);
}

/* Consumes n bytes read from child c. */
static void procs_consume(struct procs_child *c, const char *buf, size_t n, unsigned *nready)
{
	size_t i = 0;

	while (i < n) {
		if (c->in_stats) {
			size_t want = sizeof(*c->stats) - c->got;
			size_t take = n - i < want ? n - i : want;

			memcpy((char *)c->stats + c->got, buf + i, take);
			c->got += take;
			i += take;
			continue;
		}
		if (buf[i] == PROCS_MSG_READY && !c->ready) {
			c->ready = true;
			(*nready)++;
		} else if (buf[i] == PROCS_MSG_STATS) {
			c->in_stats = true;
		}
		i++;
	}
}

/* Reads every child's messages until all pipes close or the deadline passes. */
static void procs_collect(struct procs_child *ch, unsigned nprocs, uint64_t deadline_ns,
			  rb_sub_ready_fn ready, void *ready_arg)
{
	struct pollfd pfd[PROCS_MAX];
	unsigned nready = 0, nopen = nprocs;
	bool ready_done = false;
	char buf[65536];

	while (nopen > 0) {
		uint64_t now = rb_mono_ns();
		int timeout, n;

		if (now >= deadline_ns)
			return;
		timeout = (int)((deadline_ns - now) / 1000000u) + 1;
		for (unsigned k = 0; k < nprocs; k++) {
			pfd[k].fd = ch[k].fd;
			pfd[k].events = POLLIN;
			pfd[k].revents = 0;
		}
		n = poll(pfd, nprocs, timeout);
		if (n < 0 && errno != EINTR)
			return;
		for (unsigned k = 0; k < nprocs && n > 0; k++) {
			ssize_t got;

			if (pfd[k].fd < 0 || pfd[k].revents == 0)
				continue;
			got = read(ch[k].fd, buf, sizeof(buf));
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0) {
				close(ch[k].fd);
				ch[k].fd = -1;
				nopen--;
				continue;
			}
			procs_consume(&ch[k], buf, (size_t)got, &nready);
		}
		if (!ready_done && nready == nprocs) {
			ready_done = true;
			if (ready)
				ready(ready_arg);
		}
	}
}

int rb_procs_run(const struct rb_sub_opts *opts, unsigned nprocs, struct rb_sub_stats *stats,
		 rb_sub_ready_fn ready, void *ready_arg)
{
	struct procs_child ch[PROCS_MAX];
	uint64_t deadline;
	int r = 0;

	if (nprocs == 0 || nprocs > PROCS_MAX)
		return -EINVAL;
	memset(ch, 0, sizeof(ch));
	for (unsigned k = 0; k < nprocs; k++) {
		ch[k].fd = -1;
		ch[k].pid = -1;
	}
	fflush(NULL);
	for (unsigned k = 0; k < nprocs; k++) {
		int fds[2];

		ch[k].stats = malloc(sizeof(*ch[k].stats));
		if (ch[k].stats == NULL) {
			r = -ENOMEM;
			goto out_reap;
		}
		if (pipe(fds) < 0) {
			r = -errno;
			goto out_reap;
		}
		ch[k].pid = fork();
		if (ch[k].pid < 0) {
			r = -errno;
			close(fds[0]);
			close(fds[1]);
			goto out_reap;
		}
		if (ch[k].pid == 0) {
			close(fds[0]);
			for (unsigned j = 0; j < k; j++)
				close(ch[j].fd);
			procs_child_main(opts, k, nprocs, fds[1]);
		}
		close(fds[1]);
		ch[k].fd = fds[0];
	}
	deadline = rb_mono_ns() + (uint64_t)(opts->duration_s * 1e9) +
		   ((uint64_t)opts->connect_timeout_ms + PROCS_GRACE_MS) * 1000000u;
	procs_collect(ch, nprocs, deadline, ready, ready_arg);
out_reap:
	for (unsigned k = 0; k < nprocs; k++) {
		int status;

		if (ch[k].pid <= 0)
			continue;
		if (ch[k].fd >= 0) {
			/* Still silent after the deadline (or setup failed): stop it. */
			kill(ch[k].pid, SIGKILL);
			close(ch[k].fd);
		}
		while (waitpid(ch[k].pid, &status, 0) < 0 && errno == EINTR)
			;
		if (ch[k].in_stats && ch[k].got == sizeof(*ch[k].stats))
			rb_sub_stats_merge(stats, ch[k].stats);
		else if (r == 0)
			r = -ECHILD;
	}
	for (unsigned k = 0; k < nprocs; k++)
		free(ch[k].stats);
	return r;
}
