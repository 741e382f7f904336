/*
 * jsraw.c - roomcast-jsraw: how many messages a second JetStream stores on
 * this machine with nothing of roomcast in the way, the ceiling under the
 * broker's --store nats (docs/BENCHMARKS.md "The ceilings").
 *
 *   roomcast-jsraw --url URLS [--replicas N] [--bytes B] [--subjects K]
 *                  [--seconds S] [--pending P] [--msg-id] [--header] [--follow]
 *
 * (Re)creates the stream "jsraw" (subjects jsraw.>, file storage, N
 * replicas), then publishes B-byte messages round-robin over K subjects
 * with js_PublishMsgAsync, at most P unacknowledged, for S seconds, and
 * prints one JSON line: acknowledged messages, messages/s, errors.
 * --msg-id adds a unique Nats-Msg-Id (the duplicate window's work, as the
 * broker's publishes have), --header a small header like the broker's
 * rseq, --follow an ordered consumer reading every message back (each
 * broker's follower). No fence: one publish per subject in flight is the broker's own
 * limit, which this measures the server without. Deletes the stream at the
 * end.
 */
#include <inttypes.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic uint64_t acked, failed, followed;

/* --follow: an ordered consumer reads every message back, as each broker's follower does */
static void on_follow(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc;
	(void)sub;
	(void)closure;
	atomic_fetch_add(&followed, 1);
	natsMsg_Destroy(msg);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	(void)js;
	(void)closure;
	if (pa != NULL && pae == NULL)
		atomic_fetch_add(&acked, 1);
	else
		atomic_fetch_add(&failed, 1);
	natsMsg_Destroy(msg);
}

/* --url: one URL or a comma-separated list */
static natsStatus set_servers(natsOptions *opts, const char *urls)
{
	char *copy = strdup(urls), *save = NULL, *list[16];
	int n = 0;
	natsStatus st;

	if (copy == NULL)
		return NATS_NO_MEMORY;
	for (char *t = strtok_r(copy, ",", &save); t != NULL && n < 16; t = strtok_r(NULL, ",", &save))
		list[n++] = t;
	st = natsOptions_SetServers(opts, (const char **)list, n);
	free(copy);
	return st;
}

static int usage(void)
{
	fprintf(stderr, "usage: roomcast-jsraw --url URLS [--replicas N] [--bytes B] [--subjects K] [--seconds S] "
			"[--pending P] [--msg-id] [--header] [--follow]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *url = NULL;
	int replicas = 1, bytes = 256, subjects = 100, seconds = 5, pending = 65536;
	bool msg_id = false, header = false, follow = false;
	natsSubscription *fsub = NULL;
	natsOptions *opts = NULL;
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsOptions jo;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	const char *subj_filter[] = { "jsraw.>" };
	char *payload;
	uint64_t sent = 0;
	double t0, t1;
	natsStatus st;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--msg-id") == 0) {
			msg_id = true;
			continue;
		}
		if (strcmp(a, "--header") == 0) {
			header = true;
			continue;
		}
		if (strcmp(a, "--follow") == 0) {
			follow = true;
			continue;
		}
		if (v == NULL)
			return usage();
		i++;
		if (strcmp(a, "--url") == 0)
			url = v;
		else if (strcmp(a, "--replicas") == 0)
			replicas = atoi(v);
		else if (strcmp(a, "--bytes") == 0)
			bytes = atoi(v);
		else if (strcmp(a, "--subjects") == 0)
			subjects = atoi(v);
		else if (strcmp(a, "--seconds") == 0)
			seconds = atoi(v);
		else if (strcmp(a, "--pending") == 0)
			pending = atoi(v);
		else
			return usage();
	}
	if (url == NULL || replicas < 1 || bytes < 1 || subjects < 1 || seconds < 1 || pending < 1)
		return usage();
	payload = malloc((size_t)bytes);
	if (payload == NULL)
		return 1;
	memset(payload, 'x', (size_t)bytes);

	if (natsOptions_Create(&opts) != NATS_OK || set_servers(opts, url) != NATS_OK ||
	    natsOptions_SetTimeout(opts, 10000) != NATS_OK || natsConnection_Connect(&nc, opts) != NATS_OK) {
		fprintf(stderr, "jsraw: cannot connect to %s: %s\n", url, nats_GetLastError(NULL));
		return 1;
	}
	jsOptions_Init(&jo);
	jo.Wait = 10000;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.MaxPending = pending;
	jo.PublishAsync.StallWait = 10000;
	if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK)
		return 1;
	js_DeleteStream(js, "jsraw", NULL, NULL);
	jsStreamConfig_Init(&sc);
	sc.Name = "jsraw";
	sc.Subjects = subj_filter;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = replicas;
	if ((st = js_AddStream(&si, js, &sc, NULL, &jerr)) != NATS_OK) {
		fprintf(stderr, "jsraw: cannot create the stream: %s (%d)\n", natsStatus_GetText(st), (int)jerr);
		return 1;
	}
	jsStreamInfo_Destroy(si);
	if (follow) {
		jsSubOptions so;
		jsSubOptions_Init(&so);
		so.Stream = "jsraw";
		so.Ordered = true;
		so.Config.Heartbeat = 500 * 1000000LL;
		if ((st = js_Subscribe(&fsub, js, "jsraw.>", on_follow, NULL, NULL, &so, &jerr)) != NATS_OK) {
			fprintf(stderr, "jsraw: cannot follow the stream: %s (%d)\n", natsStatus_GetText(st), (int)jerr);
			return 1;
		}
		natsSubscription_SetPendingLimits(fsub, -1, -1);
	}

	t0 = now_s();
	t1 = t0 + seconds;
	while (now_s() < t1) {
		/* a batch between clock reads */
		for (int k = 0; k < 256; k++, sent++) {
			char subj[64], id[48];
			natsMsg *m = NULL;
			jsPubOptions po;

			snprintf(subj, sizeof(subj), "jsraw.s%d", (int)(sent % (uint64_t)subjects));
			jsPubOptions_Init(&po);
			if (msg_id) {
				snprintf(id, sizeof(id), "jsraw %" PRIu64, sent);
				po.MsgId = id;
			}
			st = natsMsg_Create(&m, subj, NULL, payload, bytes);
			if (st == NATS_OK && header)
				st = natsMsgHeader_Set(m, "Rc-Rseq", "12345");
			if (st == NATS_OK)
				st = js_PublishMsgAsync(js, &m, &po);
			natsMsg_Destroy(m);
			if (st != NATS_OK) {
				atomic_fetch_add(&failed, 1);
				break;
			}
		}
	}
	{
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = 30000;
		js_PublishAsyncComplete(js, &po);
	}
	t1 = now_s();
	printf("{\"replicas\":%d,\"bytes\":%d,\"subjects\":%d,\"msg_id\":%s,\"header\":%s,\"follow\":%s,\"sent\":%" PRIu64
	       ",\"followed\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"failed\":%" PRIu64
	       ",\"seconds\":%.2f,\"msgs_per_s\":%.0f}\n",
	       replicas, bytes, subjects, msg_id ? "true" : "false", header ? "true" : "false",
	       follow ? "true" : "false", sent, (uint64_t)atomic_load(&followed),
	       (uint64_t)atomic_load(&acked), (uint64_t)atomic_load(&failed), t1 - t0,
	       (double)atomic_load(&acked) / (t1 - t0));
	if (fsub != NULL) {
		natsSubscription_Unsubscribe(fsub);
		natsSubscription_Destroy(fsub);
	}
	js_DeleteStream(js, "jsraw", NULL, NULL);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(opts);
	free(payload);
	nats_Close();
	return 0;
}
