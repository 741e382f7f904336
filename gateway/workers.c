#include "workers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"

struct gw_workers {
	pthread_mutex_t mtx; /* guards snap */
	unsigned n;
	struct gw_metrics snap[]; /* a copy per worker, updated by its own loop */
};

int gw_workers_new(unsigned n, struct gw_workers **out)
{
	struct gw_workers *w;

	if (n == 0)
		return RC_EINVAL;
	w = calloc(1, sizeof(*w) + n * sizeof(w->snap[0]));
	if (w == NULL)
		return RC_ENOMEM;
	pthread_mutex_init(&w->mtx, NULL);
	w->n = n;
	*out = w;
	return RC_OK;
}

void gw_workers_free(struct gw_workers *w)
{
	if (w == NULL)
		return;
	pthread_mutex_destroy(&w->mtx);
	free(w);
}

void gw_workers_publish(struct gw_workers *w, unsigned i, const struct gw_metrics *m)
{
	if (w == NULL || i >= w->n)
		return;
	pthread_mutex_lock(&w->mtx);
	w->snap[i] = *m;
	pthread_mutex_unlock(&w->mtx);
}

void gw_workers_sum(struct gw_workers *w, unsigned self, const struct gw_metrics *own, struct gw_metrics *out)
{
	*out = *own;
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mtx);
	for (unsigned i = 0; i < w->n; i++)
		if (i != self)
			gw_metrics_add(out, &w->snap[i]);
	pthread_mutex_unlock(&w->mtx);
}

static int listen_socket(const struct sockaddr *addr, socklen_t len, bool reuseport, int *fd_out)
{
	int one = 1, fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
	    bind(fd, addr, len) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	*fd_out = fd;
	return 0;
}

int gw_listen_sockets(const struct sockaddr *addr, unsigned n, int *fds, int *errno_out)
{
	struct sockaddr_storage ss;
	socklen_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	unsigned i;

	memcpy(&ss, addr, len);
	for (i = 0; i < n; i++) {
		if (listen_socket((struct sockaddr *)&ss, len, n > 1, &fds[i]) != 0)
			goto fail;
		/* port 0: the others join the port the first one got */
		if (i == 0 && getsockname(fds[0], (struct sockaddr *)&ss, &len) != 0) {
			i++;
			goto fail;
		}
	}
	return RC_OK;
fail:
	*errno_out = errno;
	while (i-- > 0)
		close(fds[i]);
	return RC_EIO;
}

int gw_listen_name(int fd, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char ip[INET6_ADDRSTRLEN];

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
			snprintf(buf, size, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
			return RC_OK;
		}
		if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
			snprintf(buf, size, "[%s]:%u", ip, (unsigned)ntohs(sin6->sin6_port));
			return RC_OK;
		}
	}
	snprintf(buf, size, "?");
	return RC_EIO;
}
