/* control_log.c - the engine's log events sent to the Erlang node, bounded.
 *
 * klog() hands each event to control_log_sink() once the channel is up
 * (control.c sets it as log.c's sink); it is sent as {log, Level, Msg}.
 * Two bounds keep a flood from reaching the node or filling the engine's
 * memory: a token bucket per class (debug and info; warnings and errors,
 * so a flood of the first cannot hide the second) lets LOG_RATE events a
 * second through, and events are dropped while more than LOG_BACKLOG_MAX
 * bytes wait unwritten on the channel.  What is dropped is counted
 * (log_events_dropped, STAT log_events_dropped) and reported in one
 * warning: rate drops once a second (log_report_timer), backlog drops as
 * soon as the channel drained (control_log_drained(), from control.c). */
#include "control_internal.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

/* Log events waiting for Erlang beyond this are dropped (and counted), so a
 * slow or stuck node cannot make the engine's memory grow without bound. */
#define LOG_BACKLOG_MAX (8u << 20)
/* At most this many events a second are sent, for debug and info events and
 * separately for warnings and errors (so a flood of the first cannot hide
 * the second); the rest are dropped, counted and reported once a second.
 * This bounds what the Erlang side has to handle (see LOG_QUEUE_MAX in
 * src/kraken_engine.erl), whatever the engine's load. */
#define LOG_RATE 2000

static struct {
    int64_t millitokens; /* 1000 per event */
    int64_t last_ms;
    uint64_t dropped; /* since the last report */
} log_budget[2];
static uint64_t log_dropped_backlog; /* since the last report */
static struct event *log_report_timer;

static int log_send(enum log_level level, const char *msg, size_t len)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return -1;
    if (ei_x_encode_tuple_header(&x, 3) < 0 || ei_x_encode_atom(&x, "log") < 0 ||
        ei_x_encode_atom(&x, log_level_name(level)) < 0 ||
        ei_x_encode_binary(&x, msg, (long)len) < 0) {
        ei_x_free(&x);
        return -1;
    }
    return control_send(&x);
}

static int backlog_full(void)
{
    return control_backlog() > LOG_BACKLOG_MAX;
}

static void report_one(uint64_t *count, const char *what)
{
    if (!*count)
        return;
    char note[160];
    int n = snprintf(note, sizeof note, "%" PRIu64 " %s", *count, what);
    if (log_send(LOG_WARNING, note, (size_t)n) == 0)
        *count = 0;
}

/* Reports the events dropped because the backlog was full, once it is not
 * (from out_drained_cb, or with the next event sent). */
static void report_backlog(void)
{
    if (!backlog_full())
        report_one(&log_dropped_backlog,
                   "log events dropped: the Erlang node was not reading them");
}

/* Reports the events dropped by the rate limit: from log_report_timer, at
 * most once a second (if the backlog is full too, they wait for the next). */
static void report_rate(void)
{
    if (backlog_full())
        return;
    char what[96];
    snprintf(what, sizeof what, "debug and info log events dropped: more than %d a second",
             LOG_RATE);
    report_one(&log_budget[0].dropped, what);
    snprintf(what, sizeof what, "warning and error log events dropped: more than %d a second",
             LOG_RATE);
    report_one(&log_budget[1].dropped, what);
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void arm_report_timer(void)
{
    if (log_report_timer && !evtimer_pending(log_report_timer, NULL)) {
        struct timeval second = {1, 0};
        evtimer_add(log_report_timer, &second);
    }
}

/* Token bucket: LOG_RATE events a second, bursts of up to LOG_RATE. */
static int log_budget_take(int class)
{
    int64_t now = monotonic_ms();
    int64_t elapsed = now - log_budget[class].last_ms; /* ms: LOG_RATE millitokens each */
    int64_t full = (int64_t)LOG_RATE * 1000;
    int64_t t = log_budget[class].millitokens + (elapsed < 1000 ? elapsed : 1000) * LOG_RATE;
    log_budget[class].last_ms = now;
    log_budget[class].millitokens = t < full ? t : full;
    if (log_budget[class].millitokens < 1000)
        return -1;
    log_budget[class].millitokens -= 1000;
    return 0;
}

void control_log_sink(enum log_level level, const char *msg, size_t len)
{
    int class = level >= LOG_WARNING;
    if (log_budget_take(class) < 0) {
        log_budget[class].dropped++;
        log_events_dropped++;
        arm_report_timer();
        return;
    }
    if (backlog_full()) {
        log_dropped_backlog++;
        log_events_dropped++;
        return;
    }
    report_backlog();
    if (log_send(level, msg, len) < 0)
        log_events_dropped++; /* out of memory: nothing better to do */
}

static void log_report_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    report_rate();
    if (log_budget[0].dropped || log_budget[1].dropped)
        arm_report_timer(); /* the backlog was full: try again in a second */
}

/* The channel's output drained: report drops now, not at the next event. */
void control_log_drained(void)
{
    report_backlog();
}

int control_log_start(struct event_base *base)
{
    log_report_timer = evtimer_new(base, log_report_cb, NULL);
    return log_report_timer ? 0 : -1;
}

void control_log_stop(void)
{
    if (log_report_timer)
        event_free(log_report_timer);
    log_report_timer = NULL;
}
