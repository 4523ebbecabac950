/* control.c - ei-encoded control channel to the Erlang node; see control.h.
 *
 * The I/O side: framing on stdin/stdout (a packet over MAX_PACKET is
 * skipped), the start-up handshake (the config packet starts the server,
 * answered {ready, Port} or {error, Reason}), and dispatching each packet.
 * Packets are decoded by control_decode.c, which bounds every read by the
 * packet's length; calls are answered by control_call.c, log events sent
 * by control_log.c, both through control_send(). */
#include "control.h"
#include "control_internal.h"

#include <ei.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"

#define MAX_PACKET (64u << 20)

static struct bufferevent *ch_in, *ch_out;
static struct server *ch_srv;
static struct event_base *ch_base;
static int ch_started;
static size_t ch_skip; /* bytes of an oversized packet still to discard */

/* ---- sending ---- */

/* Queues one packet (4-byte length + the term), whole or not at all: the
 * space is reserved first, so a failed allocation cannot leave a length
 * without its term and desynchronise the channel.  Frees x. */
int control_send(ei_x_buff *x)
{
    unsigned char len[4] = {(unsigned char)(x->index >> 24), (unsigned char)(x->index >> 16),
                            (unsigned char)(x->index >> 8), (unsigned char)x->index};
    int rc = -1;
    if (ch_out) {
        struct evbuffer *out = bufferevent_get_output(ch_out);
        if (evbuffer_expand(out, 4 + (size_t)x->index) == 0 && evbuffer_add(out, len, 4) == 0 &&
            evbuffer_add(out, x->buff, (size_t)x->index) == 0)
            rc = 0;
    }
    ei_x_free(x);
    return rc;
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

size_t control_backlog(void)
{
    return ch_out ? evbuffer_get_length(bufferevent_get_output(ch_out)) : 0;
}

/* The channel's output drained: report dropped log events now. */
static void out_drained_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    (void)arg;
    control_log_drained();
}

/* ---- packets ---- */

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

static void handle_config(const struct engine_config *cfg)
{
    char err[256];
    if (server_start(ch_srv, ch_base, cfg, err, sizeof err) < 0)
        fail(err);
    ch_started = 1;
    log_min_level = cfg->log_level;
    log_set_sink(control_log_sink);
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "ready");
    ei_x_encode_long(&x, server_port(ch_srv, PROTO_KIND_KRAKEN));
    control_send(&x);
    klog(LOG_INFO, "engine %d listening on %s port %d (%u shards, %u messages retained per shard)",
         (int)getpid(), cfg->listen_ip, server_port(ch_srv, PROTO_KIND_KRAKEN), cfg->num_shards,
         cfg->retain_per_shard);
    if (server_port(ch_srv, PROTO_KIND_REDIS) >= 0)
        klog(LOG_INFO, "engine %d: Redis protocol on %s port %d", (int)getpid(), cfg->listen_ip,
             server_port(ch_srv, PROTO_KIND_REDIS));
    if (ch_srv->eng.http_port >= 0)
        klog(LOG_INFO, "engine %d: HTTP endpoint (/metrics, /readyz) on %s port %d", (int)getpid(),
             cfg->listen_ip, ch_srv->eng.http_port);
}

static void handle_packet(const char *buf, size_t len)
{
    struct ctl_command cmd;
    char err[256];
    switch (ctl_decode(buf, len, &cmd, err, sizeof err)) {
    case CTL_MALFORMED:
        klog(LOG_ERROR, "control: bad packet of %zu bytes ignored: %s", len, err);
        return;
    case CTL_BAD_CONFIG:
        if (!ch_started)
            fail(err);
        klog(LOG_ERROR, "control: config packet ignored after start-up (%s)", err);
        return;
    case CTL_OK:
        break;
    }
    if (cmd.kind == CTL_CONFIG && !ch_started)
        handle_config(&cmd.config);
    else if (cmd.kind == CTL_CALL && ch_started)
        control_call(ch_srv, &cmd, buf);
    else
        klog(LOG_ERROR, "control: %s packet ignored %s", cmd.kind == CTL_CONFIG ? "config" : "call",
             ch_started ? "after start-up" : "before the config");
}

static void in_read_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        if (ch_skip) { /* the rest of a packet we could not take */
            size_t n = evbuffer_get_length(in);
            n = n < ch_skip ? n : ch_skip;
            evbuffer_drain(in, n);
            ch_skip -= n;
            if (ch_skip)
                return;
        }
        unsigned char hdr[4];
        if (evbuffer_copyout(in, hdr, 4) < 4)
            return;
        uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        if (len > MAX_PACKET) {
            klog(LOG_ERROR, "control: packet of %" PRIu32 " bytes (over %u) ignored", len,
                 MAX_PACKET);
            evbuffer_drain(in, 4);
            ch_skip = len;
            continue;
        }
        if (evbuffer_get_length(in) < 4 + (size_t)len)
            return;
        const char *p = (const char *)evbuffer_pullup(in, 4 + (ev_ssize_t)len);
        if (!p)
            klog(LOG_ERROR, "control: out of memory reading a packet of %" PRIu32 " bytes; ignored",
                 len);
        else
            handle_packet(p + 4, len);
        evbuffer_drain(in, 4 + (size_t)len);
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

/* The channel must be a pipe or a socket from the Erlang node: epoll cannot
 * watch a regular file or /dev/null, and a terminal is no node. */
static int check_channel_fd(int fd, const char *name, char *err, size_t errlen)
{
    struct stat st;
    const char *what;
    if (fstat(fd, &st) < 0)
        what = "closed";
    else if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))
        return 0;
    else if (isatty(fd))
        what = "a terminal";
    else if (S_ISCHR(st.st_mode))
        what = "a character device such as /dev/null";
    else if (S_ISREG(st.st_mode))
        what = "a regular file";
    else
        what = "not a pipe";
    snprintf(err, errlen,
             "%s is %s, not a pipe from the Erlang node: the kraken application starts this "
             "program as a port; to run it by hand use --standalone",
             name, what);
    return -1;
}

int control_start(struct event_base *base, struct server *srv, char *err, size_t errlen)
{
    ch_base = base;
    ch_srv = srv;
    if (check_channel_fd(STDIN_FILENO, "stdin", err, errlen) < 0 ||
        check_channel_fd(STDOUT_FILENO, "stdout", err, errlen) < 0)
        return -1;
    snprintf(err, errlen, "cannot open the control channel: out of memory");
    if (ei_init() != 0)
        return -1;
    if (control_log_start(base) < 0)
        return -1;
    evutil_make_socket_nonblocking(STDIN_FILENO);
    evutil_make_socket_nonblocking(STDOUT_FILENO);
    ch_in = bufferevent_socket_new(base, STDIN_FILENO, 0);
    ch_out = bufferevent_socket_new(base, STDOUT_FILENO, 0);
    if (!ch_in || !ch_out)
        return -1;
    bufferevent_setcb(ch_in, in_read_cb, NULL, in_event_cb, NULL);
    bufferevent_setcb(ch_out, NULL, out_drained_cb, NULL, NULL);
    if (bufferevent_enable(ch_in, EV_READ) < 0 || bufferevent_enable(ch_out, EV_WRITE) < 0) {
        snprintf(err, errlen, "cannot watch the control channel");
        return -1;
    }
    return 0;
}

void control_stop(void)
{
    log_set_sink(NULL);
    if (ch_in)
        bufferevent_free(ch_in);
    if (ch_out)
        bufferevent_free(ch_out);
    control_log_stop();
    ch_in = ch_out = NULL;
}
