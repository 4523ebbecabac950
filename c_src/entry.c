/* entry.c - shared, reference-counted published entries; see entry.h. */
#include "entry.h"

#include <stdlib.h>
#include <string.h>

#include "kraken/protocol.h"
#include "router.h"

struct entry *entry_new(struct router *r, struct topic *const *topics, uint32_t ntopics,
                        const char *payload, size_t len)
{
    static const char prefix[] = "MESSAGE ";
    size_t hdr = sizeof prefix - 1 + proto_digits(len) + 2;
    for (uint32_t i = 0; i < ntopics; i++)
        hdr += topics[i]->len + 1;
    size_t head = sizeof(struct entry) + ntopics * sizeof(struct topic *);
    struct entry *e = malloc(head + hdr + len + 2);
    if (!e)
        return NULL;
    e->refcnt = 1;
    e->ntopics = ntopics;
    e->seq = 0;
    e->time = 0;
    e->publisher = 0;
    e->mark = 0;
    e->router = r;
    e->hdr_len = hdr;
    e->payload_len = len;
    e->wire = (char *)e + head;
    char *w = e->wire;
    memcpy(w, prefix, sizeof prefix - 1);
    w += sizeof prefix - 1;
    for (uint32_t i = 0; i < ntopics; i++) {
        e->topics[i] = topics[i];
        topic_ref(topics[i]);
        memcpy(w, topics[i]->name, topics[i]->len);
        w += topics[i]->len;
        *w++ = ' ';
    }
    w += proto_fmt_u64(w, len);
    *w++ = '\r';
    *w++ = '\n';
    if (len)
        memcpy(w, payload, len);
    w[len] = '\r';
    w[len + 1] = '\n';
    return e;
}

void entry_unref(struct entry *e)
{
    if (--e->refcnt > 0)
        return;
    for (uint32_t i = 0; i < e->ntopics; i++)
        router_topic_unref(e->router, e->topics[i]);
    free(e);
}
