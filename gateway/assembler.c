#include "assembler.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "flush.h"
#include "frame.h"
#include "gateway.h"
#include "le.h"
#include "log.h"
#include "publish.h"

struct gw_assembler {
	struct gw *gw;
	gw_assembler_fn done;
	void *arg;
	struct rc_flush_asm *flush;
};

static bool asm_wants(void *arg, const char *room, size_t room_len)
{
	struct gw_assembler *a = arg;

	return gw_hub_wants(&a->gw->hub, room, room_len);
}

static void asm_done(void *arg, struct rc_frame_reader *r, uint64_t first, bool complete)
{
	struct gw_assembler *a = arg;

	a->done(a->arg, r, first, complete);
}

static void asm_bad(void *arg, int err, const char *what, size_t len)
{
	(void)arg;
	rc_log_warn("dropped a corrupt bus message", "what=%s err=\"%s\" bytes=%zu", what, rc_strerror(err), len);
}

struct gw_assembler *gw_assembler_new(struct gw *gw, gw_assembler_fn done, void *arg)
{
	struct gw_assembler *a = calloc(1, sizeof(*a));
	struct rc_flush_cfg cfg = {
		.wants = asm_wants,
		.done = asm_done,
		.bad = asm_bad,
		.arg = a,
		.counts = &gw->m.bus,
	};

	if (a == NULL)
		return NULL;
	a->gw = gw;
	a->done = done;
	a->arg = arg;
	a->flush = rc_flush_asm_new(&cfg);
	if (a->flush == NULL) {
		free(a);
		return NULL;
	}
	return a;
}

void gw_assembler_free(struct gw_assembler *a)
{
	if (a == NULL)
		return;
	rc_flush_asm_free(a->flush);
	free(a);
}

/* The acknowledgements at the end of an index go to the publisher, whichever bus brings them. */
static void asm_acks(struct gw_assembler *a, const uint8_t *body, size_t len)
{
	const uint8_t *ix = body + RC_BUS_TOPIC_INDEX_LEN;
	struct rc_ack_reader r;
	struct rc_ack ack;

	if (len < RC_BUS_TOPIC_INDEX_LEN + RC_INDEX_HDR_SIZE ||
	    memcmp(body, RC_BUS_TOPIC_INDEX, RC_BUS_TOPIC_INDEX_LEN) != 0 || !(ix[5] & RC_FRAME_ACKS) ||
	    memcmp(ix, "RCF1", 4) != 0)
		return;
	len -= RC_BUS_TOPIC_INDEX_LEN;
	if (rc_index_acks(ix, &len, &r) != RC_OK)
		return; /* the assembler drops it as corrupt */
	while (rc_ack_next(&r, &ack))
		gw_publish_ack(a->gw, rc_le_get64(ix + 8), &ack);
}

void gw_assembler_msg(struct gw_assembler *a, nng_msg *msg)
{
	asm_acks(a, nng_msg_body(msg), nng_msg_len(msg));
	rc_flush_asm_msg(a->flush, msg);
}
