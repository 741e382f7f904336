/*
 * broker.h - what the api workers share: the history, the bus and counters.
 */
#ifndef RC_BROKER_H
#define RC_BROKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ackmem;
struct link;

#include "bus.h"
#include "history.h"
#include "nstore.h"
#include "proto_limits.h" /* what one publish or replay may hold */
#include "store.h"

struct broker {
	struct history *hist;
	struct bus *bus;
	struct store *store; /* NULL: memory only (--store memory) */
	struct nstore *nats; /* --store nats: publishes go to JetStream, the history follows it */
	struct ackmem *acks; /* the latest publishes answered on the bus, for the op "acks" (NULL: none) */
	struct link *link;   /* --link: gateways' publishes and bus over plain TCP (NULL: none) */
	size_t max_event_bytes;
	size_t replay_max_bytes; /* what one replay answer's events may take (0: no cap; at least one event) */
	int max_replays;	 /* replay answers built or being handed over at once (0: no limit) */
	atomic_int replays_in_flight;
	atomic_bool stopping; /* set on SIGTERM: publishes are refused */

	_Atomic uint64_t requests, errors, publishes, events_published, replays, replays_busy;
};

#endif
