/* proto_link.h - the engine's side of an upstream link: an outbound
 * connection to another node's Kraken port, speaking Kraken's protocol in
 * push mode (see proto_link.c, cluster.c). */
#ifndef KRAKEN_PROTO_LINK_H
#define KRAKEN_PROTO_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"

struct cluster_core;

struct link_state {
    struct cluster_core *core; /* NULL once detached: its closing concerns nobody */
    bool up;                   /* the peer answered the handshake */
    bool eof;                  /* the peer closed the connection before that */
    uint64_t received;         /* entries received from the peer */
};

static inline struct link_state *link_state(struct conn *c)
{
    return conn_pstate(c);
}

extern const struct proto_ops proto_link;

#endif
