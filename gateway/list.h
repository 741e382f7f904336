/*
 * list.h - an intrusive doubly-linked list with a sentinel head.
 * Nodes live inside the objects they link; nothing here allocates.
 */
#ifndef GW_LIST_H
#define GW_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct gw_list {
	struct gw_list *prev, *next;
};

#define gw_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void gw_list_init(struct gw_list *l)
{
	l->prev = l->next = l;
}

static inline bool gw_list_empty(const struct gw_list *l)
{
	return l->next == l;
}

/* True when node n is on some list (nodes are initialized unlinked). */
static inline bool gw_list_linked(const struct gw_list *n)
{
	return n->next != n && n->next != NULL;
}

static inline void gw_list_insert_tail(struct gw_list *head, struct gw_list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void gw_list_remove(struct gw_list *n)
{
	if (!gw_list_linked(n))
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	gw_list_init(n);
}

static inline struct gw_list *gw_list_first(const struct gw_list *head)
{
	return head->next == head ? NULL : head->next;
}

/* Iterates safely against removal of the current node. */
#define gw_list_each_safe(pos, tmp, head) for (pos = (head)->next, tmp = pos->next; pos != (head); pos = tmp, tmp = pos->next)

#endif
