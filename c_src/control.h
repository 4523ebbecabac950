/* control.h - the channel to the Erlang node (docs/engine-protocol.md).
 *
 * Packets of {packet, 4} framing on stdin/stdout, each one Erlang external
 * term encoded and decoded with erl_interface (ei).  The first packet is the
 * configuration; the engine answers {ready, Port} or {error, Reason}.  Then
 * it serves {call, Ref, Request} admin requests and emits {log, Level, Msg}
 * events.  EOF on stdin means the node is gone: the engine stops. */
#ifndef KRAKEN_CONTROL_H
#define KRAKEN_CONTROL_H

struct event_base;
struct server;

#include <stddef.h>

/* Starts reading the channel; the server is started when the config arrives.
 * Fails (-1, with a one-line reason in err) when stdin or stdout is not a
 * pipe or socket, e.g. `kraken_engine </dev/null`, or out of memory. */
int control_start(struct event_base *base, struct server *srv, char *err, size_t errlen);
void control_stop(void);

#endif
