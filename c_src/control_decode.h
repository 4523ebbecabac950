/* control_decode.h - control packets (docs/engine-protocol.md) from bytes to
 * a command: pure, no I/O, no globals, every read bounded by the packet.
 *
 * A packet comes from the Erlang node, but it is still input: a term whose
 * declared lengths or counts run past the packet, a truncated term, trailing
 * bytes or an unexpected shape is rejected with a reason, never read beyond
 * its end.  ctl_term_end() walks one external term checking every length
 * against the bytes left; ctl_decode() runs it over the whole packet first,
 * and again before each ei_decode_* call at the index it is about to read
 * (ei trusts the lengths it reads, and decoding past a tuple's last element
 * would read the next term, or past the packet). */
#ifndef KRAKEN_CONTROL_DECODE_H
#define KRAKEN_CONTROL_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"

enum ctl_kind {
    CTL_CONFIG, /* {config, Options} */
    CTL_CALL,   /* {call, Ref, Request} */
};

enum ctl_request {
    CTL_STATS,
    CTL_DUMP_QUEUES,
    CTL_DUMP_QUEUE_TOPICS, /* {dump_queue_topics, Id} */
    CTL_DUMP_TOPICS,
    CTL_READY,             /* health.h's readiness: ready | {not_ready, Why} */
    CTL_SET_LOG_LEVEL,     /* {set_log_level, Level} */
    CTL_BADARG,            /* any other request: answered {error, badarg} */
};

struct ctl_command {
    enum ctl_kind kind;
    struct engine_config config; /* CTL_CONFIG: the defaults plus the options given */
    long long ref;               /* CTL_CALL */
    int request_offset;          /* CTL_CALL: where Request starts in the packet, for the
                                    requests decoded elsewhere (cluster_control.c) */
    enum ctl_request request;    /* CTL_CALL */
    uint64_t queue_id;           /* CTL_DUMP_QUEUE_TOPICS */
    enum log_level level;        /* CTL_SET_LOG_LEVEL */
};

enum ctl_status {
    CTL_OK,
    CTL_MALFORMED,  /* not one well-formed term of a known packet shape */
    CTL_BAD_CONFIG, /* a well-formed {config, _} with a bad value or a bad shape */
};

/* Decodes the packet buf[0..len) (the bytes after the 4-byte length) into
 * *cmd.  Anything but CTL_OK writes a one-line reason into err. */
enum ctl_status ctl_decode(const char *buf, size_t len, struct ctl_command *cmd, char *err,
                           size_t errlen);

/* The offset just past the external term (no version byte) starting at
 * buf[off], or -1 if it is not a well-formed term within buf[0..len): an
 * unknown tag, or a length, count or arity that runs past len. */
long ctl_term_end(const char *buf, size_t len, size_t off);

#endif
