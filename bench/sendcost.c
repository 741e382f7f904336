/*
 * roomcast-sendcost: the CPU one small send costs on loopback TCP, written
 * one write(2) per socket (what a server does per connection) or as batches
 * of io_uring send operations (what the gateway's sender.c does).
 *
 *   roomcast-sendcost [--conns N] [--rounds R] [--bytes B]
 *                     [--mode write|uring|uring-msg|uring-fixed]
 *
 * Opens N connected pairs on 127.0.0.1; a child process reads every client
 * side with epoll (a stand-in for the browsers). Each round sends B bytes on
 * each of the N server sockets, then sleeps 20 ms (so every send finds an
 * idle socket, like a heartbeat or one event per stream). Prints one line:
 * the sending process's CPU (user + system, getrusage) per send.
 * uring-fixed registers the sockets with the ring first (registered files)
 * and sends by index, which spares the kernel a descriptor lookup per send.
 * Loopback only; everything is closed and the child reaped at the end.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH 256

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* The child: reads everything until the sockets close or 5 s pass idle. */
static void drain(const int *fds, int n)
{
	static char buf[65536];
	int ep = epoll_create1(0);

	for (int i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fds[i] };
		epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
	}
	for (int open = n; open > 0;) {
		struct epoll_event evs[256];
		int k = epoll_wait(ep, evs, 256, 5000);
		if (k <= 0)
			break;
		for (int i = 0; i < k; i++)
			if (read(evs[i].data.fd, buf, sizeof(buf)) <= 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, evs[i].data.fd, NULL);
				open--;
			}
	}
	_exit(0);
}

enum uring_mode { URING_SEND, URING_SENDMSG, URING_FIXED };

static int send_uring(struct io_uring *ring, const int *fds, int n, const char *data, size_t len, enum uring_mode mode)
{
	static struct msghdr mh[BATCH];
	static struct iovec iov[BATCH];

	for (int i = 0; i < n;) {
		int batch = 0;
		while (i < n && batch < BATCH) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
			if (mode == URING_SENDMSG) {
				iov[batch] = (struct iovec){ (void *)data, len };
				mh[batch] = (struct msghdr){ .msg_iov = &iov[batch], .msg_iovlen = 1 };
				io_uring_prep_sendmsg(sqe, fds[i], &mh[batch], MSG_DONTWAIT | MSG_NOSIGNAL);
			} else if (mode == URING_FIXED) {
				io_uring_prep_send(sqe, i, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
				sqe->flags |= IOSQE_FIXED_FILE;
			} else {
				io_uring_prep_send(sqe, fds[i], data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
			}
			i++;
			batch++;
		}
		if (io_uring_submit_and_wait(ring, (unsigned)batch) < 0)
			return -1;
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(ring, head, cqe)
		{
			if (cqe->res != (int)len) {
				fprintf(stderr, "roomcast-sendcost: a send returned %d\n", cqe->res);
				return -1;
			}
			seen++;
		}
		io_uring_cq_advance(ring, seen);
		if ((int)seen != batch)
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int n = 5000, rounds = 20, one = 1;
	size_t bytes = 8;
	const char *mode = "write";
	enum uring_mode umode;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct io_uring ring;
	struct rlimit rl;
	char *data;
	int *cli, *srv, lfd, rv = 0;
	pid_t child;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--conns") == 0)
			n = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--rounds") == 0)
			rounds = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--bytes") == 0)
			bytes = (size_t)atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--mode") == 0)
			mode = argv[i + 1];
		else
			break;
	}
	if (n < 1 || n > 9000 || rounds < 1 || bytes < 1 || bytes > 65536 ||
	    (strcmp(mode, "write") && strcmp(mode, "uring") && strcmp(mode, "uring-msg") &&
	     strcmp(mode, "uring-fixed"))) {
		fprintf(stderr, "usage: roomcast-sendcost [--conns 1..9000] [--rounds R] [--bytes 1..65536] "
				"[--mode write|uring|uring-msg|uring-fixed]\n");
		return 2;
	}
	umode = strcmp(mode, "uring-msg") == 0	   ? URING_SENDMSG
		: strcmp(mode, "uring-fixed") == 0 ? URING_FIXED
						   : URING_SEND;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	data = malloc(bytes);
	cli = calloc((size_t)n, sizeof(int));
	srv = calloc((size_t)n, sizeof(int));
	if (data == NULL || cli == NULL || srv == NULL)
		return 1;
	memset(data, 'x', bytes);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0 ||
	    listen(lfd, 4096) != 0) {
		perror("roomcast-sendcost: listen");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		cli[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (cli[i] < 0 || connect(cli[i], (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
		    (srv[i] = accept(lfd, NULL, NULL)) < 0) {
			perror("roomcast-sendcost: connect");
			return 1;
		}
		setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	close(lfd);
	child = fork();
	if (child < 0)
		return 1;
	if (child == 0) {
		for (int i = 0; i < n; i++)
			close(srv[i]);
		drain(cli, n);
	}
	for (int i = 0; i < n; i++)
		close(cli[i]);
	if (strcmp(mode, "write") != 0 &&
	    io_uring_queue_init(BATCH, &ring, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) != 0 &&
	    io_uring_queue_init(BATCH, &ring, 0) != 0) {
		fprintf(stderr, "roomcast-sendcost: io_uring is not available\n");
		rv = 1;
		goto out;
	}
	if (umode == URING_FIXED && io_uring_register_files(&ring, srv, (unsigned)n) != 0) {
		fprintf(stderr, "roomcast-sendcost: cannot register the sockets with the ring\n");
		rv = 1;
		goto out_ring;
	}
	usleep(200000);
	double c0 = cpu_seconds();
	for (int r = 0; r < rounds && rv == 0; r++) {
		if (strcmp(mode, "write") == 0) {
			for (int i = 0; i < n; i++)
				if (write(srv[i], data, bytes) != (ssize_t)bytes) {
					perror("roomcast-sendcost: write");
					rv = 1;
					break;
				}
		} else if (send_uring(&ring, srv, n, data, bytes, umode) != 0) {
			rv = 1;
		}
		usleep(20000);
	}
	double c1 = cpu_seconds();
	if (rv == 0)
		printf("{\"mode\":\"%s\",\"conns\":%d,\"rounds\":%d,\"bytes\":%zu,\"cpu_s\":%.3f,\"us_per_send\":%.2f}\n",
		       mode, n, rounds, bytes, c1 - c0, (c1 - c0) / ((double)n * rounds) * 1e6);
out_ring:
	if (strcmp(mode, "write") != 0)
		io_uring_queue_exit(&ring);
out:
	for (int i = 0; i < n; i++)
		close(srv[i]);
	kill(child, SIGTERM);
	waitpid(child, NULL, 0);
	free(data);
	free(cli);
	free(srv);
	return rv;
}
