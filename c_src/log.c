/* log.c - level filtering and dispatch of engine log events; see log.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

enum log_level log_min_level = LOG_INFO;
uint64_t log_events_dropped;

static void stderr_sink(enum log_level level, const char *msg, size_t len)
{
    fprintf(stderr, "kraken_engine [%s] %.*s\n", log_level_name(level), (int)len, msg);
}

static log_sink_fn current_sink = stderr_sink;

void log_set_sink(log_sink_fn sink)
{
    current_sink = sink ? sink : stderr_sink;
}

int log_level_parse(const char *name, enum log_level *out)
{
    static const struct {
        const char *name;
        enum log_level level;
    } names[] = {{"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARNING},
                 {"warning", LOG_WARNING}, {"error", LOG_ERROR}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    return -1;
}

const char *log_level_name(enum log_level level)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    return names[level];
}

void klog(enum log_level level, const char *fmt, ...)
{
    if (level < log_min_level)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    current_sink(level, buf, len);
}

int log_recur_due(struct log_recur *r, int64_t now_ms, uint64_t *quiet)
{
    if (r->last_ms && now_ms - r->last_ms < LOG_RECUR_MS) {
        r->quiet++;
        return 0;
    }
    *quiet = r->quiet;
    r->quiet = 0;
    r->last_ms = now_ms;
    return 1;
}
