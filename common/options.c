#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "log.h"

static const char *const log_names[] = { "debug", "info", "warn", "error" };

static void env_name(const char *name, char *buf, size_t cap)
{
	size_t n = (size_t)snprintf(buf, cap, "ROOMCAST_");
	for (const char *p = name; *p && n + 1 < cap; p++)
		buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	buf[n] = '\0';
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off", "" };
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (strcasecmp(v, yes[i]) == 0)
			return (*out = true), RC_OK;
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (strcasecmp(v, no[i]) == 0)
			return (*out = false), RC_OK;
	return RC_EINVAL;
}

static int parse_int(const char *v, bool size_suffix, int64_t *out)
{
	char *end;
	long long x;
	int64_t mul = 1;

	if (*v == '\0' || isspace((unsigned char)*v))
		return RC_EINVAL;
	errno = 0;
	x = strtoll(v, &end, 10);
	if (errno == ERANGE)
		return RC_ERANGE;
	if (end == v)
		return RC_EINVAL;
	if (size_suffix && *end != '\0') {
		switch (tolower((unsigned char)*end)) {
		case 'k': mul = 1024; break;
		case 'm': mul = 1024 * 1024; break;
		case 'g': mul = 1024 * 1024 * 1024; break;
		default: return RC_EINVAL;
		}
		end++;
		if (tolower((unsigned char)*end) == 'i' && tolower((unsigned char)end[1]) == 'b')
			end += 2;
		else if (tolower((unsigned char)*end) == 'b')
			end++;
	}
	if (*end != '\0')
		return RC_EINVAL;
	if (x > INT64_MAX / mul || x < INT64_MIN / mul)
		return RC_ERANGE;
	*out = (int64_t)x * mul;
	return RC_OK;
}

/* Stores value v into opt; from names where it came from for the message. */
static int opt_set(const struct rc_opt *o, const char *v, const char *from, char *err, size_t errlen)
{
	int rv;
	int64_t x;

	switch (o->kind) {
	case RC_OPT_STR:
		*(const char **)o->dst = v;
		return RC_OK;
	case RC_OPT_BOOL:
		if (parse_bool(v, (bool *)o->dst) != RC_OK) {
			snprintf(err, errlen, "%s: expected true or false, got '%s'", from, v);
			return RC_EINVAL;
		}
		return RC_OK;
	case RC_OPT_LOG:
		if (rc_log_level_parse(v, (enum rc_log_level *)o->dst) != RC_OK) {
			snprintf(err, errlen, "%s: expected debug, info, warn or error, got '%s'", from, v);
			return RC_EINVAL;
		}
		return RC_OK;
	case RC_OPT_INT:
	case RC_OPT_SIZE:
		rv = parse_int(v, o->kind == RC_OPT_SIZE, &x);
		if (rv != RC_OK) {
			snprintf(err, errlen, "%s: expected %s, got '%s'", from,
				 o->kind == RC_OPT_SIZE ? "a size (e.g. 65536 or 64k)" : "an integer", v);
			return RC_EINVAL;
		}
		if (x < o->min || x > o->max) {
			snprintf(err, errlen, "%s: %" PRId64 " is out of range %" PRId64 "..%" PRId64, from, x,
				 o->min, o->max);
			return RC_EINVAL;
		}
		*(int64_t *)o->dst = x;
		return RC_OK;
	}
	return RC_EINVAL;
}

static const struct rc_opt *opt_find(const struct rc_opt *table, const char *name, size_t len)
{
	for (const struct rc_opt *o = table; o->name; o++)
		if (strlen(o->name) == len && memcmp(o->name, name, len) == 0)
			return o;
	return NULL;
}

int rc_opts_parse(const struct rc_opt *table, int argc, char **argv, struct rc_opts_result *res)
{
	char ename[128], from[160];
	bool only_pos = false;

	memset(res, 0, sizeof(*res));
	res->pos = calloc((size_t)(argc > 0 ? argc : 1), sizeof(char *));
	if (res->pos == NULL) {
		snprintf(res->err, sizeof(res->err), "out of memory");
		return RC_ENOMEM;
	}
	for (const struct rc_opt *o = table; o->name; o++) {
		const char *v;
		env_name(o->name, ename, sizeof(ename));
		v = getenv(ename);
		/* an empty variable counts as unset (compose writes ${X} of an unset X as "") */
		if (v == NULL || *v == '\0')
			continue;
		if (opt_set(o, v, ename, res->err, sizeof(res->err)) != RC_OK)
			return RC_EINVAL;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *v;
		const struct rc_opt *o;
		size_t nlen;

		if (only_pos || a[0] != '-' || a[1] == '\0') {
			res->pos[res->npos++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_pos = true;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			res->help = 1;
			continue;
		}
		if (a[1] != '-') {
			snprintf(res->err, sizeof(res->err), "unknown option '%s' (options are long: --name)", a);
			return RC_EINVAL;
		}
		a += 2;
		eq = strchr(a, '=');
		nlen = eq ? (size_t)(eq - a) : strlen(a);
		o = opt_find(table, a, nlen);
		if (o == NULL) {
			snprintf(res->err, sizeof(res->err), "unknown option '--%.*s'", (int)nlen, a);
			return RC_EINVAL;
		}
		snprintf(from, sizeof(from), "--%s", o->name);
		if (o->kind == RC_OPT_BOOL && eq == NULL) {
			*(bool *)o->dst = true;
			continue;
		}
		if (eq != NULL) {
			v = eq + 1;
		} else if (i + 1 < argc) {
			v = argv[++i];
		} else {
			snprintf(res->err, sizeof(res->err), "%s needs a value", from);
			return RC_EINVAL;
		}
		if (opt_set(o, v, from, res->err, sizeof(res->err)) != RC_OK)
			return RC_EINVAL;
	}
	return RC_OK;
}

void rc_opts_result_fini(struct rc_opts_result *res)
{
	free(res->pos);
	res->pos = NULL;
	res->npos = 0;
}

int rc_opts_main(const char *prog, const char *usage_line, const struct rc_opt *table, int argc, char **argv,
		 int max_pos, struct rc_opts_result *res)
{
	int rc = -1;

	if (rc_opts_parse(table, argc, argv, res) != RC_OK) {
		fprintf(stderr, "%s: %s (see --help)\n", prog, res->err);
		rc = 2;
	} else if (res->help) {
		rc_opts_usage(stdout, usage_line, table);
		rc = 0;
	} else if (res->npos > max_pos) {
		fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, res->pos[max_pos]);
		rc = 2;
	}
	if (rc != -1)
		rc_opts_result_fini(res);
	return rc;
}

void rc_opts_usage(FILE *out, const char *usage_line, const struct rc_opt *table)
{
	char ename[128], flag[64], def[64];

	fprintf(out, "%s\n\nOptions (each also read from its environment variable; flags win):\n", usage_line);
	for (const struct rc_opt *o = table; o->name; o++) {
		env_name(o->name, ename, sizeof(ename));
		switch (o->kind) {
		case RC_OPT_STR: {
			const char *s = *(const char **)o->dst;
			snprintf(flag, sizeof(flag), "--%s VALUE", o->name);
			snprintf(def, sizeof(def), "%s", s ? s : "(none)");
			break;
		}
		case RC_OPT_INT:
		case RC_OPT_SIZE:
			snprintf(flag, sizeof(flag), "--%s N", o->name);
			snprintf(def, sizeof(def), "%" PRId64, *(int64_t *)o->dst);
			break;
		case RC_OPT_BOOL:
			snprintf(flag, sizeof(flag), "--%s", o->name);
			snprintf(def, sizeof(def), "%s", *(bool *)o->dst ? "true" : "false");
			break;
		case RC_OPT_LOG:
			snprintf(flag, sizeof(flag), "--%s LEVEL", o->name);
			snprintf(def, sizeof(def), "%s", log_names[*(enum rc_log_level *)o->dst]);
			break;
		}
		fprintf(out, "  %-28s %s\n  %-28s [env %s, default: %s]\n", flag, o->help, "", ename, def);
	}
	fprintf(out, "  %-28s %s\n", "--help", "print this help and exit");
}

int rc_opt_list(const char *s, char **items, int max)
{
	int n = 0;

	for (;;) {
		const char *end = strchr(s, ','), *b = s, *e = end ? end : s + strlen(s);
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (b == e || n == max) {
			rc_opt_list_free(items, n);
			return RC_EINVAL;
		}
		if ((items[n] = strndup(b, (size_t)(e - b))) == NULL) {
			rc_opt_list_free(items, n);
			return RC_ENOMEM;
		}
		n++;
		if (end == NULL)
			return n;
		s = end + 1;
	}
}

void rc_opt_list_free(char **items, int n)
{
	for (int i = 0; i < n; i++) {
		free(items[i]);
		items[i] = NULL;
	}
}
