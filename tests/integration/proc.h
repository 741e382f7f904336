/*
 * proc.h - child processes for integration tests.
 *
 * Spawns a binary with arguments and environment, its stdout and stderr
 * captured to files in a private temporary directory; signals it, waits for it
 * with a deadline, reads what it wrote. Also: free TCP ports on 127.0.0.1, a
 * monotonic clock, and polling a child's output for a string.
 *
 * No child outlives the test: every spawned child is registered until it is
 * reaped; proc_init() installs an atexit handler and fatal-signal handlers that
 * SIGKILL and reap whatever is left, and each child also gets
 * PR_SET_PDEATHSIG(SIGKILL), which covers a test process that dies hard.
 * Tests should still call proc_kill() (or proc_wait()) in their cmocka
 * teardown, which runs even when an assertion failed.
 *
 * Threads: call everything from the test's main thread (PDEATHSIG is tied to
 * the thread that forked; the registry is not locked). proc_now_ms(),
 * proc_free_ports() and proc_read_file() may be called from any thread.
 */
#ifndef RC_TEST_PROC_H
#define RC_TEST_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* proc_wait()'s result when the deadline passed and the child still runs. */
#define PROC_TIMEOUT (-1)

struct proc {
	pid_t pid;  /* 0 when not running (never started, or reaped) */
	int status; /* once reaped: the exit code, or 128 + the signal number */
	bool reaped;
	int stdin_fd; /* write end of the child's stdin with spec.stdin_pipe, else -1 */
	char out_path[512], err_path[512];
};

struct proc_spec {
	const char *path;	 /* the binary (absolute, or relative to the cwd) */
	const char *const *argv; /* arguments after argv[0], NULL-terminated; NULL: none */
	/*
	 * Changes to the inherited environment, NULL-terminated; NULL: none.
	 * "KEY=VALUE" sets KEY, "KEY" removes it.
	 */
	const char *const *env;
	/* Inherited variables whose names start with this are removed first (e.g. "ROOMCAST_"); NULL: none. */
	const char *env_drop_prefix;
	const void *stdin_data; /* fed to the child's stdin (through a file); NULL: /dev/null */
	size_t stdin_len;
	bool stdin_pipe;  /* give the child a pipe as stdin; the parent writes to proc.stdin_fd */
	const char *name; /* names the output files (default: the binary's base name) */
};

/* Creates the temporary directory and installs the cleanup handlers. Idempotent; returns 0 or -errno. */
int proc_init(void);

/*
 * Starts a child. On success p describes it and the child is registered for
 * cleanup. Returns 0, or -errno (then p->pid is 0). p may be uninitialised.
 */
int proc_spawn(struct proc *p, const struct proc_spec *spec);

/* Sends sig to a running child. Returns 0, or -ESRCH when it is not running. */
int proc_signal(struct proc *p, int sig);

/*
 * Waits up to timeout_ms (< 0: forever) for the child to exit and reaps it.
 * Returns its status (exit code, or 128 + signal), or PROC_TIMEOUT. Returns the
 * stored status at once when the child was already reaped.
 */
int proc_wait(struct proc *p, int timeout_ms);

/* True while the child has not exited (reaps it when it has). */
bool proc_running(struct proc *p);

/* Closes the child's stdin pipe (no-op without one). */
void proc_close_stdin(struct proc *p);

/*
 * SIGKILLs a child that still runs and reaps it; closes its stdin pipe.
 * No-op on a reaped child, and on a zero-filled struct proc.
 */
void proc_kill(struct proc *p);

/* Kills and reaps every registered child (what the atexit handler runs). Async-signal-safe. */
void proc_kill_all(void);

/* The whole file, malloc'ed and NUL-terminated (len without the NUL), or NULL. */
char *proc_read_file(const char *path, size_t *len);

/* What the child wrote so far (never NULL; "" when nothing). Caller frees. */
char *proc_stdout(const struct proc *p);
char *proc_stderr(const struct proc *p);

/*
 * Polls the child's stdout (fd 1) or stderr (fd 2) until it contains needle.
 * Returns true when found; false at the deadline, or when the child exited
 * without writing it.
 */
bool proc_wait_output(struct proc *p, int fd, const char *needle, int timeout_ms);

/*
 * Finds n distinct TCP ports that are free on 127.0.0.1 (each bound to port 0
 * at the same time, then all closed). Returns 0 or -errno.
 */
int proc_free_ports(int *ports, size_t n);

/* The absolute path of name found on $PATH (malloc'ed), or NULL. */
char *proc_which(const char *name);

/* Milliseconds of a monotonic clock. */
int64_t proc_now_ms(void);

/* Sleeps ms milliseconds: only as the pause between two polls, never as synchronisation. */
void proc_poll_pause(int ms);

#endif
