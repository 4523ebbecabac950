/* log.h - engine log events.
 *
 * The engine does not write logs itself: each event goes to a sink, which is
 * the control channel (an Erlang `{log, Level, Msg}` term that becomes an OTP
 * logger event) or, in standalone mode, stderr.  Events below the current
 * level are dropped here, before formatting. */
#ifndef KRAKEN_LOG_H
#define KRAKEN_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR };

typedef void (*log_sink_fn)(enum log_level level, const char *msg, size_t len);

extern enum log_level log_min_level;
/* Events a sink had to drop (control_log.c: the node was not reading), in all. */
extern uint64_t log_events_dropped;
void log_set_sink(log_sink_fn sink);
/* Parses debug|info|warn|warning|error; returns -1 if unknown. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level); /* logger names: debug info warning error */

void klog(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A condition that may recur many times a second (out of descriptors):
 * whether to log it now, at most once per LOG_RECUR_MS.  *last_ms is the
 * time of the last line (0: never), *quiet counts the times not logged
 * since; on true, *quiet holds that count for the line, and is reset. */
#define LOG_RECUR_MS 10000
struct log_recur {
    int64_t last_ms;
    uint64_t quiet;
};
int log_recur_due(struct log_recur *r, int64_t now_ms, uint64_t *quiet);

#endif
