/*
 * options.h - long flags and ROOMCAST_* environment variables, from one table.
 *
 * Each option `--foo-bar` is also read from `ROOMCAST_FOO_BAR`; a flag wins
 * over the variable. Values come as `--foo value` or `--foo=value`; booleans
 * take no value on the command line and "1/true/yes/on" or "0/false/no/off" in
 * the environment. Sizes accept a k/m/g suffix (powers of 1024).
 * Not thread-safe; call from main() before starting threads.
 */
#ifndef RC_OPTIONS_H
#define RC_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum rc_opt_kind {
	RC_OPT_STR,  /* const char ** (points into argv/environ) */
	RC_OPT_INT,  /* int64_t *, bounded by min..max */
	RC_OPT_SIZE, /* int64_t *, with k/m/g suffix, bounded by min..max */
	RC_OPT_BOOL, /* bool * (set to true by the flag) */
	RC_OPT_LOG,  /* enum rc_log_level * */
};

struct rc_opt {
	const char *name; /* without the leading "--" */
	enum rc_opt_kind kind;
	void *dst;        /* holds the default on entry */
	int64_t min, max; /* for RC_OPT_INT and RC_OPT_SIZE */
	const char *help;
};

struct rc_opts_result {
	int help;          /* --help or -h was given */
	int npos;          /* positional arguments, in order */
	char **pos;        /* points into argv; caller frees the array */
	char err[256];     /* set when the parse fails */
};

/*
 * Applies the environment, then argv[1..argc-1], to the options in table
 * (terminated by an entry with name == NULL). Arguments that are not options
 * are collected in res->pos, so options may stand before or after a
 * subcommand; "--" ends option parsing.
 * Returns 0, or RC_EINVAL with res->err naming the option and the reason.
 */
int rc_opts_parse(const struct rc_opt *table, int argc, char **argv, struct rc_opts_result *res);

/* Frees what rc_opts_parse allocated in res. */
void rc_opts_result_fini(struct rc_opts_result *res);

/*
 * The usual start of a main(): rc_opts_parse, then --help prints usage_line
 * and the options on stdout (returns 0), and a bad option or more than
 * max_pos positional arguments prints "prog: <reason> (see --help)" on
 * stderr (returns 2). Returns -1 when the program should go on; then res
 * holds the positionals and the caller calls rc_opts_result_fini.
 */
int rc_opts_main(const char *prog, const char *usage_line, const struct rc_opt *table, int argc, char **argv,
		 int max_pos, struct rc_opts_result *res);

/* Prints one line per option with its variable, help and current value. */
void rc_opts_usage(FILE *out, const char *usage_line, const struct rc_opt *table);

/*
 * Splits an option's comma-separated list ("tcp://a:1, tcp://b:1") into its
 * items, blanks around each removed: items[0..n) are malloc'd strings the
 * caller frees with rc_opt_list_free. Returns n (at least 1), or RC_EINVAL
 * (an empty item, or more than max) or RC_ENOMEM with nothing allocated.
 */
int rc_opt_list(const char *s, char **items, int max);
void rc_opt_list_free(char **items, int n);

#endif
