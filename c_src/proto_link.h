/* proto_link.h - the engine's side of an upstream link: an outbound
 * connection to another node's Kraken port, speaking Kraken's protocol in
 * push mode (see proto_link.c, cluster.c). */
#ifndef KRAKEN_PROTO_LINK_H
#define KRAKEN_PROTO_LINK_H

#include "conn.h"

/* Its per-connection state is struct link_state (cluster.h). */
extern const struct proto_ops proto_link;

#endif
