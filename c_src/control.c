/* control.c - ei-encoded control channel to the Erlang node; see control.h. */
#include "control.h"

#include <ei.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "cluster_control.h"
#include "log.h"
#include "server.h"
#include "stats.h"

#define MAX_PACKET (64u << 20)

static struct bufferevent *ch_in, *ch_out;
static struct server *ch_srv;
static struct event_base *ch_base;
static int ch_started;

/* ---- sending ---- */

static void send_x(ei_x_buff *x)
{
    unsigned char len[4] = {(unsigned char)(x->index >> 24), (unsigned char)(x->index >> 16),
                            (unsigned char)(x->index >> 8), (unsigned char)x->index};
    if (ch_out) {
        bufferevent_write(ch_out, len, 4);
        bufferevent_write(ch_out, x->buff, (size_t)x->index);
    }
    ei_x_free(x);
}

/* Blocking send, for the last words before exiting. */
static void send_x_now(ei_x_buff *x)
{
    int flags = fcntl(STDOUT_FILENO, F_GETFL);
    if (flags >= 0)
        fcntl(STDOUT_FILENO, F_SETFL, flags & ~O_NONBLOCK);
    if (ch_out)
        bufferevent_flush(ch_out, EV_WRITE, BEV_FLUSH);
    unsigned char len[4] = {(unsigned char)(x->index >> 24), (unsigned char)(x->index >> 16),
                            (unsigned char)(x->index >> 8), (unsigned char)x->index};
    struct evbuffer *pending = ch_out ? bufferevent_get_output(ch_out) : NULL;
    while (pending && evbuffer_get_length(pending) > 0)
        if (evbuffer_write(pending, STDOUT_FILENO) < 0)
            break;
    ssize_t w = write(STDOUT_FILENO, len, 4);
    if (w == 4)
        w = write(STDOUT_FILENO, x->buff, (size_t)x->index);
    (void)w;
    ei_x_free(x);
}

/* Log events waiting for Erlang beyond this are dropped (and counted), so a
 * slow or stuck node cannot make the engine's memory grow without bound. */
#define LOG_BACKLOG_MAX (8u << 20)

static void log_send(enum log_level level, const char *msg, size_t len)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "log");
    ei_x_encode_atom(&x, log_level_name(level));
    ei_x_encode_binary(&x, msg, (long)len);
    send_x(&x);
}

static uint64_t log_dropped; /* events dropped since the last report */

static void report_dropped(void)
{
    if (!log_dropped)
        return;
    char note[96];
    int n = snprintf(note, sizeof note,
                     "%" PRIu64 " log events dropped: the Erlang node was not reading them",
                     log_dropped);
    log_dropped = 0;
    log_send(LOG_WARNING, note, (size_t)n);
}

static void log_sink(enum log_level level, const char *msg, size_t len)
{
    if (ch_out && evbuffer_get_length(bufferevent_get_output(ch_out)) > LOG_BACKLOG_MAX) {
        log_dropped++;
        log_events_dropped++;
        return;
    }
    report_dropped();
    log_send(level, msg, len);
}

/* The channel's output drained: report drops now, not at the next event. */
static void out_drained_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    (void)arg;
    report_dropped();
}

/* ---- decoding helpers ---- */

static int decode_int(const char *buf, int *idx, long long *v)
{
    return ei_decode_longlong(buf, idx, v);
}

/* Decodes a binary (or a string) into out (NUL-terminated). */
static int decode_text(const char *buf, int *idx, char *out, size_t outlen)
{
    int type, size;
    if (ei_get_type(buf, idx, &type, &size) < 0 || (size_t)size >= outlen)
        return -1;
    if (type == ERL_BINARY_EXT) {
        long len;
        if (ei_decode_binary(buf, idx, out, &len) < 0)
            return -1;
        out[len] = 0;
        return 0;
    }
    if (type == ERL_STRING_EXT)
        return ei_decode_string(buf, idx, out);
    if (type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_EXT || type == ERL_ATOM_UTF8_EXT ||
        type == ERL_SMALL_ATOM_UTF8_EXT)
        return ei_decode_atom(buf, idx, out);
    return -1;
}

/* Decodes one option value (integer or text) and applies it. */
static int apply_option(struct engine_config *c, const char *name, const char *buf, int *idx,
                        char *err, size_t errlen)
{
    char text[256];
    struct config_value v = {0, 0, text};
    int type, size, start = *idx;
    if (ei_get_type(buf, idx, &type, &size) < 0)
        goto bad;
    if (type == ERL_SMALL_INTEGER_EXT || type == ERL_INTEGER_EXT || type == ERL_SMALL_BIG_EXT) {
        v.is_int = 1;
        if (decode_int(buf, idx, &v.i) < 0)
            goto bad;
    } else if (decode_text(buf, idx, text, sizeof text) < 0) {
        goto bad;
    }
    switch (config_set(c, name, &v, err, errlen)) {
    case CONFIG_OK:
        return 0;
    case CONFIG_BAD:
        return -1;
    case CONFIG_UNKNOWN:
        return 0; /* options the engine does not use */
    }
bad:
    *idx = start;
    if (ei_skip_term(buf, idx) < 0)
        return -1;
    struct config_value none = {0, 0, ""};
    if (config_set(c, name, &none, err, errlen) == CONFIG_UNKNOWN)
        return 0;
    snprintf(err, errlen, "bad value for option %.64s", name);
    return -1;
}

static int decode_config(const char *buf, int *idx, struct engine_config *c, char *err,
                         size_t errlen)
{
    int n;
    engine_config_defaults(c);
    if (ei_decode_list_header(buf, idx, &n) < 0)
        goto bad;
    for (int i = 0; i < n; i++) {
        int arity;
        char name[MAXATOMLEN_UTF8];
        if (ei_decode_tuple_header(buf, idx, &arity) < 0 || arity != 2 ||
            ei_decode_atom(buf, idx, name) < 0)
            goto bad;
        if (apply_option(c, name, buf, idx, err, errlen) < 0)
            return -1;
    }
    if (n > 0 && ei_decode_list_header(buf, idx, &n) < 0)
        goto bad;
    return 0;
bad:
    snprintf(err, errlen, "malformed configuration term");
    return -1;
}

/* ---- requests ---- */

static void encode_dump_queues(ei_x_buff *x)
{
    int64_t now = engine_now_ms();
    for (const struct conn *c = engine_oldest_conn(&ch_srv->eng); c; c = engine_next_conn(c)) {
        ei_x_encode_list_header(x, 1);
        ei_x_encode_tuple_header(x, 7);
        ei_x_encode_ulonglong(x, c->sub.id);
        ei_x_encode_binary(x, c->peer, (long)strlen(c->peer));
        ei_x_encode_ulong(x, c->sub.subs.count);
        ei_x_encode_ulong(x, c->sub.queue.count);
        ei_x_encode_ulonglong(x, c->sub.received);
        ei_x_encode_longlong(x, (now - c->connected_ms) / 1000);
        ei_x_encode_longlong(x, c->last_poll_ms < 0 ? -1 : (now - c->last_poll_ms) / 1000);
    }
    ei_x_encode_empty_list(x);
}

static void encode_topic_name(const struct topic *t, void *arg)
{
    ei_x_buff *x = arg;
    ei_x_encode_list_header(x, 1);
    ei_x_encode_binary(x, t->name, t->len);
}

static void encode_queue_topics(ei_x_buff *x, unsigned long long id)
{
    const struct conn *c = engine_find_conn(&ch_srv->eng, id);
    if (!c) {
        ei_x_encode_atom(x, "not_found");
        return;
    }
    subscriber_foreach_topic(&c->sub, encode_topic_name, x);
    ei_x_encode_empty_list(x);
}

static int cmp_topic_subs(const void *a, const void *b)
{
    const struct topic *x = *(const struct topic *const *)a, *y = *(const struct topic *const *)b;
    if (x->nsubs != y->nsubs)
        return x->nsubs > y->nsubs ? -1 : 1;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

struct topic_list {
    const struct topic **v;
    size_t n, cap;
};

static int collect_topic(const struct topic *t, void *arg)
{
    struct topic_list *l = arg;
    if (l->n < l->cap)
        l->v[l->n++] = t;
    return 0;
}

static void encode_dump_topics(ei_x_buff *x)
{
    const struct topic_index *idx = &ch_srv->eng.router.topics;
    struct topic_list l = {malloc((topic_index_count(idx) + 1) * sizeof *l.v), 0,
                           topic_index_count(idx)};
    if (!l.v) {
        ei_x_encode_tuple_header(x, 2);
        ei_x_encode_atom(x, "error");
        ei_x_encode_atom(x, "enomem");
        return;
    }
    topic_foreach(idx, TOPIC_NS_CHANNEL, collect_topic, &l);
    qsort(l.v, l.n, sizeof *l.v, cmp_topic_subs);
    for (size_t i = 0; i < l.n; i++) {
        ei_x_encode_list_header(x, 1);
        ei_x_encode_tuple_header(x, 3);
        ei_x_encode_binary(x, l.v[i]->name, l.v[i]->len);
        ei_x_encode_ulong(x, l.v[i]->shard);
        ei_x_encode_ulong(x, l.v[i]->nsubs);
    }
    ei_x_encode_empty_list(x);
    free(l.v);
}

/* The same figures as the wire `stats` reply, as a proplist. */
static void encode_stats(ei_x_buff *x)
{
    struct stats_snapshot snap;
    engine_snapshot(&ch_srv->eng, &snap);
    for (size_t i = 0; i < stats_nfields; i++) {
        const struct stats_field *f = &stats_fields[i];
        ei_x_encode_list_header(x, 1);
        ei_x_encode_tuple_header(x, 2);
        ei_x_encode_binary(x, f->name, (long)strlen(f->name));
        if (f->type == STATS_I64)
            ei_x_encode_longlong(x, stats_i64(&snap, f));
        else if (f->type == STATS_U64)
            ei_x_encode_ulonglong(x, stats_u64(&snap, f));
        else
            ei_x_encode_binary(x, stats_str(&snap, f), (long)strlen(stats_str(&snap, f)));
    }
    ei_x_encode_empty_list(x);
}

static void handle_call(const char *buf, int *idx)
{
    long long ref;
    int arity, type, size;
    char atom[MAXATOMLEN_UTF8];
    ei_x_buff x;
    if (decode_int(buf, idx, &ref) < 0 || ei_get_type(buf, idx, &type, &size) < 0) {
        klog(LOG_ERROR, "control: malformed call");
        return;
    }
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "reply");
    ei_x_encode_longlong(&x, ref);
    if (type == ERL_SMALL_TUPLE_EXT) {
        long long arg;
        ei_decode_tuple_header(buf, idx, &arity);
        if (arity == 2 && ei_decode_atom(buf, idx, atom) == 0) {
            if (cluster_control_tuple(ch_srv, atom, buf, idx, &x))
                goto done;
            if (strcmp(atom, "dump_queue_topics") == 0 && decode_int(buf, idx, &arg) == 0) {
                encode_queue_topics(&x, (unsigned long long)arg);
                goto done;
            }
            enum log_level l;
            char lv[MAXATOMLEN_UTF8];
            if (strcmp(atom, "set_log_level") == 0 && decode_text(buf, idx, lv, sizeof lv) == 0 &&
                log_level_parse(lv, &l) == 0) {
                log_min_level = l;
                ei_x_encode_atom(&x, "ok");
                goto done;
            }
        }
    } else if (ei_decode_atom(buf, idx, atom) == 0) {
        if (cluster_control_atom(ch_srv, atom, &x))
            goto done;
        if (strcmp(atom, "dump_queues") == 0) {
            encode_dump_queues(&x);
            goto done;
        }
        if (strcmp(atom, "dump_topics") == 0) {
            encode_dump_topics(&x);
            goto done;
        }
        if (strcmp(atom, "stats") == 0) {
            encode_stats(&x);
            goto done;
        }
    }
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "error");
    ei_x_encode_atom(&x, "badarg");
done:
    send_x(&x);
}

static void fail(const char *reason)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "error");
    ei_x_encode_binary(&x, reason, (long)strlen(reason));
    send_x_now(&x); /* the Erlang side reports it, in one line */
    exit(2);
}

static void handle_config(const char *buf, int *idx)
{
    struct engine_config cfg;
    char err[256];
    if (decode_config(buf, idx, &cfg, err, sizeof err) < 0 ||
        server_start(ch_srv, ch_base, &cfg, err, sizeof err) < 0)
        fail(err);
    ch_started = 1;
    log_min_level = cfg.log_level;
    log_set_sink(log_sink);
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "ready");
    ei_x_encode_long(&x, server_port(ch_srv, PROTO_KIND_KRAKEN));
    send_x(&x);
    klog(LOG_INFO, "engine %d listening on %s port %d (%u shards, %u messages retained per shard)",
         (int)getpid(), cfg.listen_ip, server_port(ch_srv, PROTO_KIND_KRAKEN), cfg.num_shards,
         cfg.retain_per_shard);
    if (server_port(ch_srv, PROTO_KIND_REDIS) >= 0)
        klog(LOG_INFO, "engine %d: Redis protocol on %s port %d", (int)getpid(), cfg.listen_ip,
             server_port(ch_srv, PROTO_KIND_REDIS));
}

static void handle_packet(const char *buf)
{
    int idx = 0, version, arity;
    char tag[MAXATOMLEN_UTF8];
    if (ei_decode_version(buf, &idx, &version) < 0 || ei_decode_tuple_header(buf, &idx, &arity) < 0 ||
        ei_decode_atom(buf, &idx, tag) < 0) {
        klog(LOG_ERROR, "control: undecodable packet ignored");
        return;
    }
    if (strcmp(tag, "config") == 0 && arity == 2 && !ch_started)
        handle_config(buf, &idx);
    else if (strcmp(tag, "call") == 0 && arity == 3 && ch_started)
        handle_call(buf, &idx);
    else
        klog(LOG_ERROR, "control: unexpected packet %s/%d ignored", tag, arity);
}

static void in_read_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        unsigned char hdr[4];
        if (evbuffer_copyout(in, hdr, 4) < 4)
            return;
        uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        if (len > MAX_PACKET) {
            fprintf(stderr, "kraken_engine: control packet of %u bytes, giving up\n", len);
            exit(3);
        }
        if (evbuffer_get_length(in) < 4 + (size_t)len)
            return;
        const char *p = (const char *)evbuffer_pullup(in, 4 + (ev_ssize_t)len);
        if (!p) {
            fprintf(stderr, "kraken_engine: out of memory reading the control channel\n");
            exit(3);
        }
        handle_packet(p + 4);
        evbuffer_drain(in, 4 + len);
    }
}

static void in_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        /* The Erlang side is gone: nobody supervises us any more. */
        log_set_sink(NULL);
        event_base_loopexit(ch_base, NULL);
    }
}

int control_start(struct event_base *base, struct server *srv)
{
    ch_base = base;
    ch_srv = srv;
    if (ei_init() != 0)
        return -1;
    evutil_make_socket_nonblocking(STDIN_FILENO);
    evutil_make_socket_nonblocking(STDOUT_FILENO);
    ch_in = bufferevent_socket_new(base, STDIN_FILENO, 0);
    ch_out = bufferevent_socket_new(base, STDOUT_FILENO, 0);
    if (!ch_in || !ch_out)
        return -1;
    bufferevent_setcb(ch_in, in_read_cb, NULL, in_event_cb, NULL);
    bufferevent_setcb(ch_out, NULL, out_drained_cb, NULL, NULL);
    bufferevent_enable(ch_in, EV_READ);
    bufferevent_enable(ch_out, EV_WRITE);
    return 0;
}

void control_stop(void)
{
    log_set_sink(NULL);
    if (ch_in)
        bufferevent_free(ch_in);
    if (ch_out)
        bufferevent_free(ch_out);
    ch_in = ch_out = NULL;
}
