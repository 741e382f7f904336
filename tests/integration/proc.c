#include "proc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PROC_MAX_CHILDREN 128

/* Children not reaped yet. Written by the main thread; read by the handlers. */
static volatile pid_t proc_registry[PROC_MAX_CHILDREN];
static char proc_dir[256];
static int proc_seq;
static bool proc_ready;

static const int proc_fatal_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL };

int64_t proc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void proc_poll_pause(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void proc_register(pid_t pid)
{
	for (int i = 0; i < PROC_MAX_CHILDREN; i++) {
		if (proc_registry[i] == 0) {
			proc_registry[i] = pid;
			return;
		}
	}
	/* full: PDEATHSIG still covers the child */
}

static void proc_unregister(pid_t pid)
{
	for (int i = 0; i < PROC_MAX_CHILDREN; i++)
		if (proc_registry[i] == pid)
			proc_registry[i] = 0;
}

void proc_kill_all(void)
{
	for (int i = 0; i < PROC_MAX_CHILDREN; i++) {
		pid_t pid = proc_registry[i];
		if (pid > 0) {
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			proc_registry[i] = 0;
		}
	}
}

static void proc_fatal_handler(int sig)
{
	int saved = errno;

	proc_kill_all();
	signal(sig, SIG_DFL);
	errno = saved;
	raise(sig);
}

static void proc_remove_dir(void)
{
	DIR *d;
	struct dirent *e;
	char path[768];
	const char *keep = getenv("ROOMCAST_TEST_KEEP");

	if (proc_dir[0] == '\0')
		return;
	if (keep != NULL && *keep != '\0' && strcmp(keep, "0") != 0) {
		fprintf(stderr, "proc: kept the children's output in %s\n", proc_dir);
		return;
	}
	d = opendir(proc_dir);
	if (d != NULL) {
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", proc_dir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(proc_dir);
}

static void proc_atexit(void)
{
	proc_kill_all();
	proc_remove_dir();
}

int proc_init(void)
{
	const char *tmp = getenv("TMPDIR");
	struct sigaction sa;

	if (proc_ready)
		return 0;
	snprintf(proc_dir, sizeof(proc_dir), "%s/rc-itest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(proc_dir) == NULL) {
		int err = errno;
		proc_dir[0] = '\0';
		return -err;
	}
	atexit(proc_atexit);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = proc_fatal_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESETHAND;
	for (size_t i = 0; i < sizeof(proc_fatal_signals) / sizeof(proc_fatal_signals[0]); i++)
		sigaction(proc_fatal_signals[i], &sa, NULL);
	/* a child that dies while we write to its stdin must not kill the test */
	signal(SIGPIPE, SIG_IGN);
	proc_ready = true;
	return 0;
}

static bool env_overridden(const char *var, const struct proc_spec *spec)
{
	size_t n = strcspn(var, "=");

	if (spec->env_drop_prefix != NULL && strncmp(var, spec->env_drop_prefix, strlen(spec->env_drop_prefix)) == 0)
		return true;
	for (const char *const *e = spec->env; e != NULL && *e != NULL; e++) {
		size_t m = strcspn(*e, "=");
		if (m == n && strncmp(*e, var, n) == 0)
			return true;
	}
	return false;
}

/* The child's environment: environ minus what spec overrides, plus spec's settings. */
static char **env_build(const struct proc_spec *spec)
{
	size_t n = 0, k = 0;
	char **envp;

	for (char **e = environ; *e != NULL; e++)
		n++;
	for (const char *const *e = spec->env; e != NULL && *e != NULL; e++)
		n++;
	envp = calloc(n + 1, sizeof(*envp));
	if (envp == NULL)
		return NULL;
	for (char **e = environ; *e != NULL; e++)
		if (!env_overridden(*e, spec))
			envp[k++] = *e;
	for (const char *const *e = spec->env; e != NULL && *e != NULL; e++)
		if (strchr(*e, '=') != NULL)
			envp[k++] = (char *)*e;
	envp[k] = NULL;
	return envp;
}

static char **argv_build(const struct proc_spec *spec)
{
	size_t n = 0, k = 0;
	char **argv;

	for (const char *const *a = spec->argv; a != NULL && *a != NULL; a++)
		n++;
	argv = calloc(n + 2, sizeof(*argv));
	if (argv == NULL)
		return NULL;
	argv[k++] = (char *)spec->path;
	for (const char *const *a = spec->argv; a != NULL && *a != NULL; a++)
		argv[k++] = (char *)*a;
	argv[k] = NULL;
	return argv;
}

static int open_cloexec(const char *path, int flags)
{
	return open(path, flags | O_CLOEXEC, 0600);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Runs in the forked child: only async-signal-safe calls until execve. */
static void proc_child(pid_t parent, int in, int out, int err, char **argv, char **envp)
{
	sigset_t none;
	struct sigaction dfl;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	/* the test may block or ignore signals; the child starts clean */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int s = 1; s < 32; s++)
		if (s != SIGKILL && s != SIGSTOP)
			sigaction(s, &dfl, NULL);
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(127);
	execve(argv[0], argv, envp);
	_exit(127);
}

int proc_spawn(struct proc *p, const struct proc_spec *spec)
{
	const char *base = strrchr(spec->path, '/');
	char in_path[600];
	char **argv = NULL, **envp = NULL;
	int in = -1, out = -1, err = -1, pipefd[2] = { -1, -1 }, rv = 0, seq;
	pid_t pid, parent = getpid();

	memset(p, 0, sizeof(*p));
	p->stdin_fd = -1;
	if ((rv = proc_init()) != 0)
		return rv;
	base = spec->name ? spec->name : base ? base + 1 : spec->path;
	seq = proc_seq++;
	snprintf(p->out_path, sizeof(p->out_path), "%s/%s.%d.out", proc_dir, base, seq);
	snprintf(p->err_path, sizeof(p->err_path), "%s/%s.%d.err", proc_dir, base, seq);
	argv = argv_build(spec);
	envp = env_build(spec);
	if (argv == NULL || envp == NULL) {
		rv = -ENOMEM;
		goto out_free;
	}
	out = open_cloexec(p->out_path, O_WRONLY | O_CREAT | O_TRUNC);
	err = open_cloexec(p->err_path, O_WRONLY | O_CREAT | O_TRUNC);
	if (out < 0 || err < 0) {
		rv = -errno;
		goto out_free;
	}
	if (spec->stdin_pipe) {
		if (pipe(pipefd) != 0) {
			rv = -errno;
			goto out_free;
		}
		fcntl(pipefd[0], F_SETFD, FD_CLOEXEC);
		fcntl(pipefd[1], F_SETFD, FD_CLOEXEC);
		in = pipefd[0];
	} else if (spec->stdin_data != NULL) {
		snprintf(in_path, sizeof(in_path), "%s/%s.%d.in", proc_dir, base, seq);
		in = open_cloexec(in_path, O_RDWR | O_CREAT | O_TRUNC);
		if (in < 0 || (rv = write_all(in, spec->stdin_data, spec->stdin_len)) != 0 ||
		    lseek(in, 0, SEEK_SET) != 0) {
			rv = rv ? rv : -errno;
			goto out_free;
		}
	} else {
		in = open_cloexec("/dev/null", O_RDONLY);
		if (in < 0) {
			rv = -errno;
			goto out_free;
		}
	}
	pid = fork();
	if (pid < 0) {
		rv = -errno;
		goto out_free;
	}
	if (pid == 0)
		proc_child(parent, in, out, err, argv, envp);
	p->pid = pid;
	proc_register(pid);
	if (spec->stdin_pipe) {
		p->stdin_fd = pipefd[1];
		pipefd[1] = -1;
	}

out_free:
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (err >= 0)
		close(err);
	free(argv);
	free(envp);
	return rv;
}

int proc_signal(struct proc *p, int sig)
{
	if (p->pid <= 0 || p->reaped)
		return -ESRCH;
	return kill(p->pid, sig) == 0 ? 0 : -errno;
}

/* Reaps the child if it exited; blocking or not. Returns true when reaped. */
static bool proc_reap(struct proc *p, bool block)
{
	int st;
	pid_t r;

	if (p->pid <= 0 || p->reaped)
		return true;
	do
		r = waitpid(p->pid, &st, block ? 0 : WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return false;
	if (r < 0)
		st = 0xff00; /* not our child any more: report exit 255 */
	proc_unregister(p->pid);
	p->reaped = true;
	p->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 255;
	p->pid = 0;
	return true;
}

int proc_wait(struct proc *p, int timeout_ms)
{
	int64_t deadline = proc_now_ms() + timeout_ms;

	if (p->pid <= 0 && !p->reaped)
		return PROC_TIMEOUT;
	if (timeout_ms < 0) {
		proc_reap(p, true);
		return p->status;
	}
	while (!proc_reap(p, false)) {
		if (proc_now_ms() >= deadline)
			return PROC_TIMEOUT;
		proc_poll_pause(2);
	}
	return p->status;
}

bool proc_running(struct proc *p)
{
	return p->pid > 0 && !proc_reap(p, false);
}

void proc_close_stdin(struct proc *p)
{
	if (p->stdin_fd >= 0) {
		close(p->stdin_fd);
		p->stdin_fd = -1;
	}
}

void proc_kill(struct proc *p)
{
	if (p->pid > 0 && !p->reaped) {
		kill(p->pid, SIGKILL);
		proc_reap(p, true);
	}
	/* a zero-filled struct has stdin_fd 0: never close the test's own stdin */
	if (p->stdin_fd > 0)
		close(p->stdin_fd);
	p->stdin_fd = -1;
}

char *proc_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (f == NULL)
		return NULL;
	for (;;) {
		if (cap - n < 4096) {
			char *nb = realloc(buf, cap ? cap * 2 : 8192);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
			cap = cap ? cap * 2 : 8192;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

static char *proc_output(const char *path)
{
	char *s = proc_read_file(path, NULL);

	return s ? s : strdup("");
}

char *proc_stdout(const struct proc *p)
{
	return proc_output(p->out_path);
}

char *proc_stderr(const struct proc *p)
{
	return proc_output(p->err_path);
}

bool proc_wait_output(struct proc *p, int fd, const char *needle, int timeout_ms)
{
	int64_t deadline = proc_now_ms() + timeout_ms;
	const char *path = fd == 2 ? p->err_path : p->out_path;

	for (;;) {
		/* look once more after the child exited: it may have written just before */
		bool running = proc_running(p);
		char *s = proc_read_file(path, NULL);
		bool found = s != NULL && strstr(s, needle) != NULL;

		free(s);
		if (found)
			return true;
		if (!running || proc_now_ms() >= deadline)
			return false;
		proc_poll_pause(5);
	}
}

int proc_free_ports(int *ports, size_t n)
{
	int fds[16];
	size_t k;
	int rv = 0;

	if (n > sizeof(fds) / sizeof(fds[0]))
		return -EINVAL;
	for (k = 0; k < n; k++) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
		socklen_t slen = sizeof(sa);

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fds[k] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[k] < 0 || bind(fds[k], (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
		    getsockname(fds[k], (struct sockaddr *)&sa, &slen) != 0) {
			rv = -errno;
			if (fds[k] >= 0)
				close(fds[k]);
			break;
		}
		ports[k] = ntohs(sa.sin_port);
	}
	while (k > 0)
		close(fds[--k]);
	return rv;
}

char *proc_which(const char *name)
{
	const char *path = getenv("PATH");
	char buf[4096];

	if (path == NULL)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		if (n > 0 && n + strlen(name) + 2 < sizeof(buf)) {
			snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, name);
			if (access(buf, X_OK) == 0)
				return strdup(buf);
		}
		path += n;
		if (*path == ':')
			path++;
	}
	return NULL;
}
