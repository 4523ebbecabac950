/* control_internal.h - what the parts of the control channel share:
 * control.c (the channel: framing, start-up, dispatch), control_call.c
 * (answering calls) and control_log.c (log events, bounded). */
#ifndef KRAKEN_CONTROL_INTERNAL_H
#define KRAKEN_CONTROL_INTERNAL_H

#include <ei.h>
#include <stddef.h>

#include "control_decode.h"
#include "log.h"

struct event_base;
struct server;

/* control.c: queues one packet (4-byte length + the term), whole or not at
 * all; frees x.  Returns 0, or -1 (no channel, or out of memory). */
int control_send(ei_x_buff *x);
/* control.c: the bytes queued on the channel, not yet written. */
size_t control_backlog(void);

/* control_call.c: answers a call ({reply, Ref, Result}), or says
 * {error, badarg | out_of_memory}. */
void control_call(struct server *srv, const struct ctl_command *cmd, const char *buf);

/* control_log.c: log.c's sink once the channel is up. */
void control_log_sink(enum log_level level, const char *msg, size_t len);
/* control_log.c: the channel's output drained (reports backlog drops). */
void control_log_drained(void);
int control_log_start(struct event_base *base);
void control_log_stop(void);

#endif
