/* proto_kraken.h - Kraken's memcached-shaped text protocol (the original's
 * wire protocol, plus the push-mode extension); see proto_kraken.c. */
#ifndef KRAKEN_PROTO_KRAKEN_H
#define KRAKEN_PROTO_KRAKEN_H

#include "conn.h"

extern const struct proto_ops proto_kraken;

#endif
