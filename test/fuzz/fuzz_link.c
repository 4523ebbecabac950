/* fuzz_link.c - libFuzzer harness for what an upstream link reads
 * (c_src/proto_link.c): the bytes a core, a parent or a static upstream
 * sends, which may be any host (the `upstreams' option), so untrusted.
 *
 * An engine in a cluster without sockets (test/c/test_cluster_net.h):
 * proxy p1 with two upstreams, chosen by the input's first byte: two
 * member cores (and p1 a core too, owning a share), two static upstreams
 * (polled every 100 ms if they refuse push mode), or two parents.  Their
 * links answered the handshake; local clients (two Kraken, two Redis)
 * then subscribe, publish and retro_subscribe across both, so the link's
 * answers have something to match: acknowledgements in flight on both
 * FIFOs, link_retro requests, patterns and shard channels (cores and
 * parents).
 *
 * The rest of the input is cut into steps, each named by a byte: bytes
 * for link 0 or 1 (1 to 32 of them, most steps), the peer's EOF, one of
 * a link's timers (ping, poll, retry: a lost link reopens), u2 leaving the
 * view or coming back (cluster_configure again), or a client's
 * request (the next byte says which: subscribe, publish, retro_subscribe,
 * poll, unsubscribe, quit, patterns, shard channels, and for a Kraken
 * client `set child' (a proxy below) and its `link_retro'; a closed
 * client's slot gets a new connection).  Small limits (1 KiB requests,
 * 2 KiB queues) put them within the input's reach.  After each step the
 * loop turns and the invariants are checked:
 *   - every queue's byte count is the sum of its items' (fuzz_session);
 *   - what a Kraken client was sent (once not held) is well framed;
 *   - what this node sent upstream is well framed (`set <kind> 0 0 <n>',
 *     n bytes and CRLF; `version'; `get messages'), and its acknowledged
 *     requests are exactly those the link's FIFO counts (cluster_ack.h);
 *     a FIFO never has more answers than requests, nor a link more
 *     VERSION answers than `version's sent;
 *   - entries a link delivered are never forwarded upstream (cluster.h);
 *   - a lost link's FIFO owes nothing, its link_retro requests and batches
 *     are gone; those still waiting are in order, each owed;
 *   - a link that was lost left no open client holding one of its core's
 *     topics, or a pattern that depends on it (cluster.h, "Failures";
 *     checked as it closes: a client may subscribe again meanwhile);
 *   - a client waits at most once per core (cluster_ack.h);
 *   - nothing is fed to a closing connection (tcn_feed asserts it).
 * Leaks are the sanitizer's: everything is freed after each input. */
#include <assert.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../c/test_cluster_net.h"
#include "cluster_retro.h"
#include "fuzz_checks.h"
#include "log.h"
#include "proto_kraken.h"
#include "proto_redis.h"

#define NCLIENTS 4 /* 0, 1: Kraken; 2, 3: Redis */
#define NUP 2      /* upstreams: cl.cores[up[i]] */

static struct conn *clients[NCLIENTS];
static size_t up[NUP];
static char topic[NUP][3][32]; /* three topics of each upstream */
static uint64_t acked[16];     /* per core: acknowledged requests seen written */
static int fresh;              /* retro_subscribe topics never used before */
/* The view: u1, (p1 itself in the first variant), u2 last, which the
 * `reconfigure' step takes out of the view and puts back. */
static struct cluster_member members[3];
static size_t nmembers;
static bool u2_in;

/* FUZZ_LINK_TRACE=1 in the environment: what each connection was sent,
 * on stderr (to write seeds: test/fuzz/corpus/link/README). */
static void trace(const char *what, int i, const char *p, size_t len)
{
    static int on = -1;
    if (on < 0)
        on = getenv("FUZZ_LINK_TRACE") != NULL;
    if (!on || !len)
        return;
    fprintf(stderr, "%s %d: ", what, i);
    for (size_t j = 0; j < len; j++)
        fprintf(stderr, p[j] == '\r' ? "\\r" : p[j] == '\n' ? "\\n" : "%c", p[j]);
    fprintf(stderr, "\n");
}


/* What this node wrote on link c (of core k): well framed; returns the
 * number of acknowledged requests (a `set' without noreply), drained. */
static uint64_t check_upstream(struct evbuffer *out, int k)
{
    uint64_t n_acked = 0;
    size_t len = evbuffer_get_length(out);
    if (len == 0)
        return 0;
    const char *p = (const char *)evbuffer_pullup(out, (ev_ssize_t)len), *end = p + len;
    trace("to core", k, p, len);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        assert(eol && eol > p && eol[-1] == '\r');
        size_t ll = (size_t)(eol - 1 - p);
        if ((ll == 7 && !memcmp(p, "version", 7)) || (ll == 12 && !memcmp(p, "get messages", 12))) {
            p = eol + 1;
            continue;
        }
        assert(ll > 4 && !memcmp(p, "set ", 4));
        const char *sp = memchr(p + 4, ' ', ll - 4);
        assert(sp && (size_t)(p + ll - sp) > 5 && !memcmp(sp, " 0 0 ", 5));
        char *num_end;
        unsigned long long n = strtoull(sp + 5, &num_end, 10);
        bool noreply = (size_t)(p + ll - num_end) == 8 && !memcmp(num_end, " noreply", 8);
        assert(noreply || num_end == p + ll);
        const char *data = eol + 1;
        assert((size_t)(end - data) >= n + 2 && !memcmp(data + n, "\r\n", 2));
        n_acked += !noreply;
        p = data + n + 2;
    }
    evbuffer_drain(out, len);
    return n_acked;
}

static int core_of_link(const struct conn *c)
{
    for (size_t i = 0; i < cl.n; i++)
        if (cl.cores[i]->link == c)
            return (int)i;
    return -1;
}

static int lost_core = -1; /* the core whose link is closing */

static void on_closing(struct conn *c)
{
    if (conn_is_uplink(c)) {
        int k = core_of_link(c);
        uint64_t n = check_upstream(c->out, k);
        if (k >= 0)
            acked[k] += n;
        lost_core = k;
        return;
    }
    for (int i = 0; i < NCLIENTS; i++)
        if (clients[i] == c)
            clients[i] = NULL;
}

/* A link was lost: no open client holds one of its core's topics, or a
 * pattern that depends on it (cluster.h, "Failures"; a proxy below is told
 * and unsubscribed, cluster_child_lost).  Checked at once: a client may
 * subscribe again while the link is down (disconnected when it is back). */
static void on_closed(void)
{
    int k = lost_core;
    lost_core = -1;
    if (k < 0)
        return;
    for (struct conn *c = engine_oldest_conn(&tcn.eng); c; c = engine_next_conn(c)) {
        if (conn_is_uplink(c) || conn_is_closing(c))
            continue;
        for (uint32_t i = 0; i < c->sub.subs.cap; i++) {
            const struct topic *t = c->sub.subs.v[i].topic;
            if (t && cluster_ns_travels((enum topic_ns)t->ns) && cluster_depends(t, k))
                trace("holder left", (int)c->sub.id, t->name, t->len);
            assert(!t || !cluster_ns_travels((enum topic_ns)t->ns) || !cluster_depends(t, k));
        }
        assert(!c->sub.npatterns || !cluster_pattern_depends(k));
    }
}

/* A request of client slot i (a new connection if it was closed). */
static void client_request(int i, int what)
{
    static const struct proto_ops *const ops[NCLIENTS] = {&proto_kraken, &proto_kraken,
                                                          &proto_redis, &proto_redis};
    if (!clients[i])
        clients[i] = tcn_conn(ops[i], "fuzz");
    struct conn *c = clients[i];
    if (conn_is_closing(c))
        return;
    const char *a = topic[what & 1][0], *b = topic[(what + 1) & 1][1];
    char buf[256], data[160];
    bool kraken = ops[i] == &proto_kraken;
    switch (what >> 1) {
    case 0: /* subscribe */
        if (kraken)
            snprintf(data, sizeof data, "%s %s", a, b);
        snprintf(buf, sizeof buf,
                 kraken ? "set subscribe 0 0 %zu\r\n%s\r\n" : "*3\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n$1\r\nx\r\n",
                 kraken ? strlen(data) : strlen(a), kraken ? data : a);
        break;
    case 1: /* publish to both upstreams (Redis: one channel) */
        if (kraken) {
            snprintf(data, sizeof data, "MESSAGE %s %s 3\r\nabc\r\n", a, b);
            snprintf(buf, sizeof buf, "set publish 0 0 %zu%s\r\n%s\r\n", strlen(data),
                     what & 1 ? " noreply" : "", data);
        } else {
            snprintf(buf, sizeof buf, "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$2\r\nhi\r\n",
                     strlen(a), a);
        }
        break;
    case 2: { /* retro_subscribe of a topic never held here, and a held one */
        char t[32];
        snprintf(t, sizeof t, "%s-%d", topic[what & 1][2], fresh++);
        if (kraken) {
            snprintf(data, sizeof data, "%" PRId64 "\r\n%s %s", engine_unix_time() - 100, t, a);
            snprintf(buf, sizeof buf, "set retro_subscribe 0 0 %zu\r\n%s\r\n", strlen(data), data);
        } else {
            snprintf(buf, sizeof buf,
                     "*3\r\n$21\r\nKRAKEN.RETROSUBSCRIBE\r\n$10\r\n%010" PRId64 "\r\n$%zu\r\n%s\r\n",
                     engine_unix_time() - 100, strlen(t), t);
        }
        break;
    }
    default:
    case 3: /* poll; unsubscribe */
        snprintf(buf, sizeof buf, kraken ? (what & 1 ? "get messages\r\n"
                                                     : "set unsubscribe 0 0 %zu\r\n%s\r\n")
                                         : "*2\r\n$11\r\nUNSUBSCRIBE\r\n$%zu\r\n%s\r\n",
                 strlen(a), a);
        break;
    case 4: /* quit; patterns; a child's link_retro (relayed upstream) */
        if (what & 1) {
            snprintf(buf, sizeof buf, kraken ? "quit\r\n" : "*1\r\n$4\r\nQUIT\r\n");
        } else if (kraken) {
            snprintf(data, sizeof data, "%" PRId64 "\r\n%s %s", engine_unix_time() - 100, a, b);
            snprintf(buf, sizeof buf, "set link_retro 0 0 %zu\r\n%s\r\n", strlen(data), data);
        } else {
            snprintf(buf, sizeof buf, "*2\r\n$10\r\nPSUBSCRIBE\r\n$2\r\nt*\r\n");
        }
        break;
    case 5: /* a Kraken client becomes a proxy below (`set child'); shard channels */
        snprintf(buf, sizeof buf,
                 kraken ? (what & 1 ? "set child 0 0 2 noreply\r\nq1\r\n" : "version\r\n")
                 : what & 1 ? "*3\r\n$8\r\nSPUBLISH\r\n$%zu\r\n%s\r\n$1\r\ns\r\n"
                            : "*2\r\n$10\r\nSSUBSCRIBE\r\n$%zu\r\n%s\r\n",
                 strlen(b), b);
        break;
    }
    evbuffer_add(c->in, buf, strlen(buf));
}

static uint64_t forwarded(void)
{
    uint64_t n = 0;
    for (size_t i = 0; i < cl.n; i++)
        n += cl.cores[i]->sent;
    return n;
}

/* After a step: see the file's top comment. */
static void check(void)
{
    for (struct conn *c = engine_oldest_conn(&tcn.eng); c; c = engine_next_conn(c)) {
        check_queue(&c->sub.queue);
        assert(c->acks.n <= cl.n);
        if (conn_is_uplink(c)) {
            int k = core_of_link(c);
            assert(k >= 0 && link_state(c)->core == cl.cores[k]);
            acked[k] += check_upstream(c->out, k);
        } else if (!conn_held(c)) {
            size_t len = evbuffer_get_length(c->out);
            if (len)
                trace("to client", (int)c->sub.id, (const char *)evbuffer_pullup(c->out, -1), len);
            if (c->ops == &proto_kraken)
                check_output(c->out);
            else
                evbuffer_drain(c->out, evbuffer_get_length(c->out));
        }
    }
    for (size_t k = 0; k < cl.n; k++) {
        const struct cluster_core *o = cl.cores[k];
        assert(o->acks.answered <= o->acks.sent);
        assert(o->ver_answered <= o->ver_sent); /* each `version' answered once */
        /* link_retro requests waiting: in order, each still owed */
        uint64_t prev = o->acks.answered;
        for (const struct cluster_retro_req *q = o->retro_head; q; q = q->next) {
            assert(q->ack > prev && q->ack <= o->acks.sent);
            assert(q->core == o && (q->next || q == o->retro_tail));
            prev = q->ack;
        }
        if (!o->link) /* lost: nothing is owed any more */
            assert(o->acks.answered == o->acks.sent && !o->retro_head && !o->subref_head &&
                   evbuffer_get_length(o->pend) == 0);
        assert(acked[k] == o->acks.sent);
    }
}

/* u2 leaves the view (its link goes, its holders are disconnected), or
 * comes back (a new link, owing its handshake). */
static void reconfigure(void)
{
    u2_in = !u2_in;
    if (u2_in)
        acked[up[1]] = 0; /* a new core: its FIFO starts again */
    struct cluster_net net = {&tcn.eng, tcn.base, tcn_connect, NULL, tcn_doom, tcn_kick};
    char err[256];
    int rc = cluster_configure(&net, "p1", 2, members, u2_in ? nmembers : nmembers - 1, NULL,
                               0, NULL, 0, err, sizeof err);
    assert(rc == 0);
    tcn_turn();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    log_min_level = getenv("FUZZ_LINK_TRACE") ? LOG_DEBUG : LOG_ERROR + 1; /* else silence */
    struct engine_config cfg;
    engine_config_defaults(&cfg);
    cfg.max_request_bytes = 1024; /* small: the limits are within the input's reach */
    cfg.max_queue_bytes = 2048;
    cfg.num_shards = 3;
    cfg.retain_per_shard = 8;
    cfg.retain_bytes_per_shard = 0;
    cfg.topics_warn = cfg.fanout_warn = 1u << 30;
    /* 0: member cores u1, u2 and p1 itself a core; 1: static upstreams;
     * 2: parents. */
    int variant = data[0] % 3;
    struct cluster_member u1 = {.name = "u1", .name_len = 2, .host = "127.0.0.1", .port = 7001,
                                .own = true, .alt = true, .poll_ms = variant == 1 ? 100 : 0,
                                .parent = variant == 2},
                          u2 = u1, p1 = {.name = "p1", .name_len = 2, .host = "127.0.0.1",
                                         .port = 7000, .own = true, .alt = true};
    u2.name = "u2";
    u2.port = 7002;
    nmembers = 0;
    members[nmembers++] = u1;
    if (variant == 0)
        members[nmembers++] = p1;
    members[nmembers++] = u2;
    u2_in = true;
    int rc = tcn_start(&cfg, "p1", members, nmembers);
    assert(rc == 0);
    memset(acked, 0, sizeof acked);
    memset(clients, 0, sizeof clients);
    fresh = 0;
    tcn.closing = on_closing;
    tcn.closed = on_closed;
    for (int u = 0; u < NUP; u++) {
        up[u] = u ? nmembers - 1 : 0; /* (cl.cores is in the view's order) */
        for (int j = 0; j < 3; j++) {
            char prefix[8];
            snprintf(prefix, sizeof prefix, "t%c%d", 'a' + u, j);
            tcn_topic_of(up[u], prefix, topic[u][j], sizeof topic[u][j]);
        }
    }
    check();
    /* the handshakes answered (two `version`: the link's, the view's sync) */
    for (int u = 0; u < NUP; u++)
        tcn_feed(up[u], "VERSION 1\r\nVERSION 1\r\n", 22);
    tcn_turn();
    /* requests in flight on both links (subscribes, publishes, retro,
     * a pattern, a shard channel) */
    client_request(0, 0); /* (what: the action << 1 | a variant) */
    client_request(2, 1);
    client_request(1, 4);
    client_request(3, 3);
    tcn_turn();
    client_request(1, 2); /* (held: these wait behind) */
    client_request(3, 5);
    client_request(2, 8);
    client_request(3, 10);
    tcn_turn();
    check();
    size_t off = 1;
    while (off < size) {
        uint8_t h = data[off++];
        uint64_t fwd = forwarded();
        int u = h & 1;
        struct conn *link = tcn_link(up[u]);
        switch ((h >> 1) & 7) {
        case 0: /* the peer's EOF */
            if (link && !conn_is_closing(link))
                tcn_eof(up[u]);
            break;
        case 1: /* a timer; or u2 leaves the view, or comes back */
            if ((h >> 4) % 4 == 3)
                reconfigure();
            else
                tcn_fire(up[u], (enum tcn_timer)((h >> 4) % 4));
            break;
        case 2: /* a client's request: the next byte says which */
            if (off < size)
                client_request((h >> 4) & 3, data[off++] % 12);
            break;
        default: { /* bytes from the peer */
            size_t n = 1 + (h >> 4) + 16 * (((h >> 1) & 7) == 7);
            if (n > size - off)
                n = size - off;
            if (link && !conn_is_closing(link)) {
                tcn_feed(up[u], data + off, n);
                assert(forwarded() == fwd); /* a core's entries are never forwarded */
            }
            off += n;
            break;
        }
        }
        tcn_turn();
        check();
    }
    tcn.closing = NULL;
    tcn.closed = NULL;
    tcn_stop();
    return 0;
}
