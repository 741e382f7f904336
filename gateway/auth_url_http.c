#include "auth_url_http.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "grant.h"
#include "list.h"

/* ---- the URL ---- */

int gw_authurl_parse(const char *url, struct gw_authurl_target *t, char *why, size_t whylen)
{
	struct http_parser_url u;
	size_t len = strlen(url);
	const char *host, *path = "/";
	size_t hl, pl = 1;

	memset(t, 0, sizeof(*t));
	if (len == 0 || len >= GW_AUTHURL_URL_MAX) {
		snprintf(why, whylen, "expected http://host[:port]/path of at most %d bytes", GW_AUTHURL_URL_MAX - 1);
		return RC_EINVAL;
	}
	if (strncasecmp(url, "https://", 8) == 0) {
		snprintf(why, whylen,
			 "https is not supported: run the application's auth endpoint on loopback or a private "
			 "network, or put a local TLS proxy (a sidecar) in front of it and give its http:// URL");
		return RC_EINVAL;
	}
	http_parser_url_init(&u);
	if (http_parser_parse_url(url, len, 0, &u) != 0 || !(u.field_set & (1 << UF_SCHEMA)) ||
	    !(u.field_set & (1 << UF_HOST)) || u.field_data[UF_HOST].len == 0) {
		snprintf(why, whylen, "'%s' is not a URL of the form http://host[:port]/path", url);
		return RC_EINVAL;
	}
	if (u.field_data[UF_SCHEMA].len != 4 || strncasecmp(url + u.field_data[UF_SCHEMA].off, "http", 4) != 0) {
		snprintf(why, whylen, "only http:// URLs are supported");
		return RC_EINVAL;
	}
	if (u.field_set & (1 << UF_USERINFO)) {
		snprintf(why, whylen, "no user:password@ in the URL (the client's own headers are sent)");
		return RC_EINVAL;
	}
	if (u.field_set & (1 << UF_FRAGMENT)) {
		snprintf(why, whylen, "no #fragment in the URL");
		return RC_EINVAL;
	}
	if ((u.field_set & (1 << UF_PORT)) && u.port == 0) {
		snprintf(why, whylen, "the port must be 1-65535");
		return RC_EINVAL;
	}
	host = url + u.field_data[UF_HOST].off;
	hl = u.field_data[UF_HOST].len;
	if (hl >= sizeof(t->host)) {
		snprintf(why, whylen, "the host name is longer than %zu bytes", sizeof(t->host) - 1);
		return RC_EINVAL;
	}
	memcpy(t->host, host, hl);
	t->port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
	if (memchr(t->host, ':', hl) != NULL)
		snprintf(t->host_header, sizeof(t->host_header), "[%s]", t->host);
	else
		snprintf(t->host_header, sizeof(t->host_header), "%s", t->host);
	if (t->port != 80) {
		size_t n = strlen(t->host_header);
		snprintf(t->host_header + n, sizeof(t->host_header) - n, ":%u", (unsigned)t->port);
	}
	if (u.field_set & (1 << UF_PATH)) {
		path = url + u.field_data[UF_PATH].off;
		pl = u.field_data[UF_PATH].len;
	}
	memcpy(t->target, path, pl);
	if (u.field_set & (1 << UF_QUERY)) {
		t->target[pl] = '?';
		memcpy(t->target + pl + 1, url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
	}
	return RC_OK;
}

/* ---- the request ---- */

void gw_authurl_request(struct rc_buf *out, const struct gw_authurl_target *t, const struct gw_authurl_ask *ask)
{
	rc_buf_printf(out, "GET %s HTTP/1.1\r\nHost: %s\r\nX-Original-Method: %s\r\nX-Original-URI: ", t->target,
		      t->host_header, ask->method);
	rc_buf_append(out, ask->uri, ask->uri_len);
	rc_buf_puts(out, "\r\n");
	if (ask->nrooms > 0) {
		rc_buf_puts(out, "X-Roomcast-Rooms: ");
		for (size_t i = 0; i < ask->nrooms; i++) {
			if (i)
				rc_buf_append(out, ",", 1);
			rc_buf_append(out, ask->rooms[i], ask->room_lens[i]);
		}
		rc_buf_puts(out, "\r\n");
	} else if (ask->firehose) {
		rc_buf_puts(out, "X-Roomcast-Firehose: true\r\n");
	}
	if (ask->cookie_len > 0) {
		rc_buf_puts(out, "Cookie: ");
		rc_buf_append(out, ask->cookie, ask->cookie_len);
		rc_buf_puts(out, "\r\n");
	}
	if (ask->authorization_len > 0) {
		rc_buf_puts(out, "Authorization: ");
		rc_buf_append(out, ask->authorization, ask->authorization_len);
		rc_buf_puts(out, "\r\n");
	}
	rc_buf_puts(out, "Accept: application/json\r\nConnection: close\r\n\r\n");
}

/* ---- the answer ---- */

static struct gw_authurl_resp *resp_of(http_parser *h)
{
	return gw_container_of(h, struct gw_authurl_resp, http);
}

static int resp_head_bytes(struct gw_authurl_resp *r, size_t n)
{
	r->head_bytes += n;
	if (r->head_bytes > r->max_head) {
		r->error = RC_ETOOBIG;
		return -1;
	}
	return 0;
}

static int resp_on_status(http_parser *h, const char *at, size_t n)
{
	(void)at;
	return resp_head_bytes(resp_of(h), n);
}

static int resp_on_header_field(http_parser *h, const char *at, size_t n)
{
	struct gw_authurl_resp *r = resp_of(h);

	if (resp_head_bytes(r, n) != 0)
		return -1;
	if (r->in_value) {
		r->in_value = false;
		r->field_len = 0;
	}
	/* names longer than the buffer are not the one we read */
	if ((size_t)r->field_len + n <= sizeof(r->field)) {
		memcpy(r->field + r->field_len, at, n);
		r->field_len = (uint8_t)(r->field_len + n);
	} else {
		r->field_len = sizeof(r->field);
	}
	return 0;
}

static int resp_on_header_value(http_parser *h, const char *at, size_t n)
{
	struct gw_authurl_resp *r = resp_of(h);
	static const char name[] = "www-authenticate";

	if (resp_head_bytes(r, n) != 0)
		return -1;
	if (!r->in_value) {
		r->in_value = true;
		r->want_value = r->field_len == sizeof(name) - 1 && strncasecmp(r->field, name, sizeof(name) - 1) == 0;
		if (r->want_value) {
			/* the last one wins, as a client reading one challenge would see */
			r->challenge_len = 0;
			r->value_too_long = false;
		}
	}
	if (!r->want_value)
		return 0;
	if (r->challenge_len + n > GW_AUTHURL_CHALLENGE_MAX) {
		r->value_too_long = true;
		return 0;
	}
	memcpy(r->challenge + r->challenge_len, at, n);
	r->challenge_len += n;
	return 0;
}

static int resp_on_headers_complete(http_parser *h)
{
	struct gw_authurl_resp *r = resp_of(h);

	r->status = h->status_code;
	if (r->value_too_long)
		r->challenge_len = 0;
	for (size_t i = 0; i < r->challenge_len; i++)
		if ((unsigned char)r->challenge[i] < 0x20 || (unsigned char)r->challenge[i] >= 0x7f)
			r->challenge_len = 0; /* passed on as a header line: printable ASCII only */
	r->challenge[r->challenge_len] = '\0';
	if (h->content_length != ULLONG_MAX && h->content_length > r->max_body) {
		r->error = RC_ETOOBIG;
		return -1;
	}
	return 0;
}

static int resp_on_body(http_parser *h, const char *at, size_t n)
{
	struct gw_authurl_resp *r = resp_of(h);

	if (r->body.len + n > r->max_body) {
		r->error = RC_ETOOBIG;
		return -1;
	}
	rc_buf_append(&r->body, at, n);
	if (r->body.err) {
		r->error = RC_ENOMEM;
		return -1;
	}
	return 0;
}

static int resp_on_message_complete(http_parser *h)
{
	struct gw_authurl_resp *r = resp_of(h);

	r->complete = true;
	http_parser_pause(h, 1); /* one answer: what follows is not read */
	return 0;
}

static const http_parser_settings resp_settings = {
	.on_status = resp_on_status,
	.on_header_field = resp_on_header_field,
	.on_header_value = resp_on_header_value,
	.on_headers_complete = resp_on_headers_complete,
	.on_body = resp_on_body,
	.on_message_complete = resp_on_message_complete,
};

void gw_authurl_resp_init(struct gw_authurl_resp *r, size_t max_head, size_t max_body)
{
	memset(r, 0, sizeof(*r));
	http_parser_init(&r->http, HTTP_RESPONSE);
	r->max_head = max_head;
	r->max_body = max_body;
	rc_buf_init(&r->body);
}

void gw_authurl_resp_fini(struct gw_authurl_resp *r)
{
	rc_buf_fini(&r->body);
}

int gw_authurl_resp_feed(struct gw_authurl_resp *r, const char *data, size_t len)
{
	if (r->complete)
		return 1;
	http_parser_execute(&r->http, &resp_settings, len ? data : NULL, len);
	if (r->error != 0)
		return r->error;
	if (r->complete)
		return 1;
	if (HTTP_PARSER_ERRNO(&r->http) != HPE_OK)
		return RC_EPROTO;
	/* the close before a whole answer (an EOF-delimited body completes above) */
	return len == 0 ? RC_EPROTO : 0;
}

/* ---- the verdict ---- */

/* The grant of a 2xx body: RC_OK with *g, else RC_EINVAL (why) or RC_ENOMEM. */
static int verdict_grant(const char *body, size_t len, struct rc_grant **g, char *why, size_t whylen)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *obj = NULL, *claims = NULL, *sub;
	bool has_sub;
	int rv = RC_EINVAL;

	if (tok == NULL)
		return RC_ENOMEM;
	obj = json_tokener_parse_ex(tok, body, (int)len);
	if (obj == NULL || json_tokener_get_error(tok) != json_tokener_success || tok->char_offset != (int)len) {
		snprintf(why, whylen, "the 2xx body is not one JSON object");
		goto out;
	}
	if (!json_object_is_type(obj, json_type_object)) {
		snprintf(why, whylen, "the 2xx body is not a JSON object");
		goto out;
	}
	has_sub = json_object_object_get_ex(obj, "sub", &sub);
	claims = json_object_new_object();
	if (claims == NULL || json_object_object_add(claims, "sub", has_sub ? json_object_get(sub)
									    : json_object_new_string("-")) != 0 ||
	    json_object_object_add(claims, "exp", json_object_new_int64(GW_AUTHURL_NO_EXPIRY)) != 0 ||
	    json_object_object_add(claims, "roomcast", json_object_get(obj)) != 0) {
		rv = RC_ENOMEM;
		goto out;
	}
	rv = rc_grant_parse(claims, g, why, whylen);
	if (rv == RC_OK && !has_sub)
		(*g)->sub_hash = 0; /* no subject: no revocation matches these streams */
out:
	json_object_put(claims);
	json_object_put(obj);
	json_tokener_free(tok);
	return rv;
}

enum gw_authurl_verdict gw_authurl_verdict(int status, const char *body, size_t len, struct rc_grant **g,
					   char *why, size_t whylen)
{
	*g = NULL;
	if (status == 401)
		return GW_AUTHURL_UNAUTHORIZED;
	if (status == 403)
		return GW_AUTHURL_FORBIDDEN;
	if (status < 200 || status > 299) {
		snprintf(why, whylen, "the application answered %d (expected 2xx, 401 or 403)", status);
		return GW_AUTHURL_UNAVAILABLE;
	}
	while (len > 0 && (*body == ' ' || *body == '\t' || *body == '\r' || *body == '\n')) {
		body++;
		len--;
	}
	while (len > 0 && (body[len - 1] == ' ' || body[len - 1] == '\t' || body[len - 1] == '\r' || body[len - 1] == '\n'))
		len--;
	if (len == 0)
		return GW_AUTHURL_ALLOW;
	if (verdict_grant(body, len, g, why, whylen) != RC_OK) {
		*g = NULL;
		return GW_AUTHURL_UNAVAILABLE;
	}
	return GW_AUTHURL_ALLOW;
}
