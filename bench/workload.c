/*
 * workload.c - the four workloads and what they measure, whatever the protocol:
 *   latency  subscribers receive continuously (poll with one `get` always in flight, or pushed);
 *            publishers keep --depth batches in flight
 *   fanout   many subscribers on few topics (polls every 20 ms, or pushed)
 *   churn    clients alternately subscribe and unsubscribe (Kraken only)
 *   idle     many connections polling rarely (Kraken only; RSS per connection)
 * For each run: set up connections and subscriptions (not measured), run for the duration, let
 * requests in flight complete, drain (poll rounds until three in a row bring nothing, or for
 * push protocols wait until nothing arrives), then sample the server's CPU and RSS and count
 * expected, received, lost, duplicated, bad and unexpected deliveries.  Topic names, the
 * entries' topics (a hash of publisher and sequence, so receivers recompute them) and the
 * payload stamp (send time, publisher, sequence, run tag) are defined here.
 */
#include "kb.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

const char *wl_names[W_N] = { "latency", "fanout", "churn", "idle" };
const char wl_letter[W_N] = { 'L', 'F', 'C', 'I' };

wparams_t P[W_N] = {
    [W_LAT] = { 50, 5, 20, 2000, 10, 2, 64, 0, 0 },
    [W_FAN] = { 200, 10, 50, 500, 10, 1, 64, 20, 0 },
    [W_CHURN] = { 50, 0, 100, 2000, 0, 0, 0, 0, 0 },
    [W_IDLE] = { 15000, 0, 20, 100000, 0, 0, 0, 2000, 0 },
};

struct gstate G;

/* ---- topics and entries */

size_t fmt_topic(char *out, int id)
{
    memcpy(out, G.prefix, (size_t)G.plen);
    return (size_t)G.plen + fmt_u(out + G.plen, (uint64_t)id);
}

/* -1 if not one of ours */
int parse_topic(const char *s, size_t n)
{
    if (n <= (size_t)G.plen || memcmp(s, G.prefix, (size_t)G.plen)) return -1;
    long v = 0;
    for (size_t i = (size_t)G.plen; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > 100000000) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < G.w->space ? (int)v : -1;
}

/* the topics of entry (pub, seq): a deterministic function, so receivers can recompute it */
void entry_topics(uint32_t pub, uint32_t seq, int *out)
{
    int k = G.w->tpm, space = G.w->space;
    for (int i = 0; i < k; i++) {
        uint64_t h = mix64(((uint64_t)G.tag << 48) ^ ((uint64_t)pub << 32) ^ seq ^ ((uint64_t)i << 56));
        for (;;) {
            int t = (int)(h % (uint64_t)space), dupl = 0;
            for (int j = 0; j < i; j++)
                if (out[j] == t) dupl = 1;
            if (!dupl) {
                out[i] = t;
                break;
            }
            h = mix64(h + 1);
        }
    }
}

static int has_topic(const conn_t *c, int t)
{
    if (c->tbits) return (int)((c->tbits[t >> 6] >> (t & 63)) & 1);
    int lo = 0, hi = c->ntopics - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (c->topics[m] == t) return 1;
        if (c->topics[m] < t) lo = m + 1;
        else hi = m - 1;
    }
    return 0;
}

char *scratch(size_t n)
{
    if (n > G.scratch_cap) {
        G.scratch_cap = n * 2;
        G.scratch = xrealloc(G.scratch, G.scratch_cap);
    }
    return G.scratch;
}

uint32_t next_entry(conn_t *c, int *tp, uint64_t *exp)
{
    uint32_t seq = ++c->seq;
    entry_topics((uint32_t)c->pub_id, seq, tp);
    if (G.pr->per_channel) { /* every subscriber of every channel, the publisher excepted */
        for (int i = 0; i < G.w->tpm; i++) {
            int t = tp[i];
            for (int k = 0; k < G.tnsubs[t]; k++) *exp += G.tsubs[t][k] != c->sub_id;
        }
        return seq;
    }
    G.stampv++; /* every distinct subscriber of the entry's topics, the publisher excepted */
    for (int i = 0; i < G.w->tpm; i++) {
        int t = tp[i];
        for (int k = 0; k < G.tnsubs[t]; k++) {
            int s = G.tsubs[t][k];
            if (s == c->sub_id) continue; /* no self-delivery */
            if (G.stamp[s] != G.stampv) {
                G.stamp[s] = G.stampv;
                (*exp)++;
            }
        }
    }
    return seq;
}

void stamp_payload(char *pl, int64_t ts, int pub, uint32_t seq)
{
    put_hex(pl, (uint64_t)ts, 16);
    put_hex(pl + 16, (uint64_t)pub, 4);
    put_hex(pl + 20, seq, 8);
    put_hex(pl + 28, G.tag, 4);
    memset(pl + STAMP_LEN, '.', (size_t)G.w->payload - STAMP_LEN);
}

void publish_sent(conn_t *c, uint64_t exp)
{
    c->expq[(c->eh + c->en) % (MAX_DEPTH + 1)] = exp;
    c->en++;
    c->inflight++;
    G.inflight_total++;
}

void send_get(conn_t *c)
{
    G.pr->poll(c);
    c->get_inflight = 1;
    G.gets_inflight++;
}

/* ---- load */

static void pub_pump(conn_t *c)
{
    if (G.phase != PH_RUN || c->state != CS_OPEN || c->pub_id < 0) return;
    while (c->inflight < O.depth) {
        if (O.rate > 0) {
            int64_t now = now_ns(), ivl = (int64_t)(NS_PER_S / O.rate);
            if (c->next_send < now - NS_PER_S) c->next_send = now; /* do not burst after a stall */
            if (now < c->next_send) {
                timer_set(c, T_SEND, c->next_send);
                break;
            }
            c->next_send += ivl;
        }
        G.pr->publish(c);
    }
    conn_flush(c);
}

static void churn_pump(conn_t *c)
{
    if (G.phase != PH_RUN || c->state != CS_OPEN) return;
    int k = G.w->tps;
    while (c->inflight < O.depth) {
        if (c->churn_sub_next) {
            G.stampv++;
            for (int i = 0; i < k;) {
                int t = (int)rnd((uint32_t)G.w->space);
                if (G.stamp[t] == G.stampv) continue;
                G.stamp[t] = G.stampv;
                c->ctopics[i++] = t;
            }
            G.pr->topics(c, K_SUB, c->ctopics, k);
        } else {
            G.pr->topics(c, K_UNSUB, c->ctopics, k);
        }
        c->churn_sub_next = !c->churn_sub_next;
        c->inflight++;
        G.inflight_total++;
    }
    conn_flush(c);
}

/* ---- receiving */

/* one delivery to subscriber c: the topics its MESSAGE line named (tids), the payload */
void on_message(conn_t *c, const int *tids, int nt, int tbad, const char *pl, size_t len, int64_t now)
{
    if (c->sub_id < 0 || !c->last_key) {
        G.unexpected++;
        return;
    }
    uint64_t ts, pub, seq, tag;
    if (len < STAMP_LEN || get_hex(pl, 16, &ts) || get_hex(pl + 16, 4, &pub) || get_hex(pl + 20, 8, &seq) ||
        get_hex(pl + 28, 4, &tag) || tag != G.tag || pub >= (uint64_t)G.npubs || len != (size_t)G.w->payload) {
        G.bad++;
        return;
    }
    if ((int)pub == c->pub_id) { /* self-delivery */
        G.unexpected++;
        return;
    }
    int et[MAX_TPM], held[MAX_TPM], nh = 0;
    entry_topics((uint32_t)pub, (uint32_t)seq, et);
    uint64_t key = seq << 8;
    if (G.pr->per_channel) { /* one channel per delivery: which of the entry's topics it is */
        int i = 0;
        while (i < G.w->tpm && (tbad || nt != 1 || et[i] != tids[0])) i++;
        if (i == G.w->tpm) {
            G.bad++;
            return;
        }
        if (!has_topic(c, et[i])) {
            G.unexpected++;
            return;
        }
        key |= (uint64_t)i;
    } else {
        for (int i = 0; i < G.w->tpm; i++)
            if (has_topic(c, et[i])) held[nh++] = et[i];
        if (!nh) {
            G.unexpected++;
            return;
        }
        if (tbad || nt != nh || memcmp(tids, held, sizeof(int) * (size_t)nh)) G.bad++;
    }
    uint64_t *lk = &c->last_key[pub];
    if (key <= *lk) {
        G.dup++; /* duplicate or out of order (order is per publisher) */
        return;
    }
    *lk = key;
    G.received++;
    G.last_recv = now;
    if (G.phase == PH_RUN) G.recv_win++;
    hist_add(&G.lat, now - (int64_t)ts);
    if (G.glat && c->pub_id < 0) hist_add(&G.glat[G.sub_group[c->sub_id % G.nsub_ports]], now - (int64_t)ts);
}

void conn_ready(conn_t *c)
{
    if (!c->ready) {
        c->ready = 1;
        G.n_ready++;
    }
}

/* the driver saw the (last) reply to a request of this kind */
void req_done(conn_t *c, int kind, int nmsgs)
{
    G.req_total++;
    int run = (G.phase == PH_RUN);
    if (run) G.req_win++;
    switch (kind) {
    case K_SUB:
    case K_UNSUB:
        if (c->churn) {
            c->inflight--;
            G.inflight_total--;
            G.topic_ops_total += (uint64_t)G.w->tps;
            if (run) G.topic_ops_win += (uint64_t)G.w->tps;
            churn_pump(c);
        } else {
            conn_ready(c);
        }
        break;
    case K_PUB: {
        c->inflight--;
        G.inflight_total--;
        uint64_t exp = c->expq[c->eh];
        c->eh = (c->eh + 1) % (MAX_DEPTH + 1);
        c->en--;
        G.expected += exp;
        G.msgs_acked += (uint64_t)G.w->batch;
        if (run) {
            G.pubreq_win++;
            G.msgs_win += (uint64_t)G.w->batch;
        }
        pub_pump(c);
        break;
    }
    case K_GET:
        c->get_inflight = 0;
        G.gets_inflight--;
        G.polls_total++;
        if (run) {
            G.polls_win++;
            if (c->poll_ivl == 0) send_get(c);
        } else if (G.phase == PH_DRAIN && c->in_round) {
            c->in_round = 0;
            G.round_msgs += (uint64_t)nmsgs;
            if (--G.round_out == 0) drain_round_end();
        }
        break;
    default:
        break;
    }
}

/* ---- drain (polling: rounds of polls until three in a row bring nothing) */

void drain_start_round(void)
{
    G.round_msgs = 0;
    G.round_out = 0;
    for (int i = 0; i < G.n; i++) {
        conn_t *c = &G.c[i];
        if (c->state != CS_OPEN || c->sub_id < 0 || c->get_inflight) continue;
        send_get(c);
        c->in_round = 1;
        G.round_out++;
        conn_flush(c);
    }
    if (!G.round_out) G.drain_done = 1;
}

void drain_round_end(void)
{
    if (G.round_msgs == 0) G.empty_rounds++;
    else G.empty_rounds = 0;
    if (G.empty_rounds >= 3) G.drain_done = 1;
    else G.drain_next_at = now_ns() + (G.round_msgs ? 0 : 30 * NS_PER_MS);
}

void on_timer(tentry_t e)
{
    conn_t *c = &G.c[e.idx];
    if (c->tgen[e.type] != e.gen || c->state != CS_OPEN) return;
    if (e.type == T_SEND) {
        pub_pump(c);
    } else if (e.type == T_POLL) {
        if (G.phase != PH_RUN) return;
        if (!c->get_inflight) {
            send_get(c);
            conn_flush(c);
        }
        c->next_poll += c->poll_ivl;
        int64_t now = now_ns();
        if (c->next_poll <= now) c->next_poll = now + c->poll_ivl;
        timer_set(c, T_POLL, c->next_poll);
    }
}

static int setup_done(void) { return G.n_ready + G.n_failed >= G.n; }
static int quiesced(void) { return G.inflight_total <= 0 && G.gets_inflight <= 0; }
static int drained(void) { return G.drain_done; }
static int all_closed(void) { return G.n_open <= 0 && G.connecting <= 0; }

/* pushed deliveries: done once all expected arrived and 50 ms passed without another (a late
   duplicate would still be seen), or once nothing arrived for 1 s (the rest is lost) */
static int push_drained(void)
{
    int64_t quiet = now_ns() - G.last_recv;
    return (G.received >= G.expected && quiet >= 50 * NS_PER_MS) || quiet >= NS_PER_S;
}

/* ------------------------------------------------------------------ one workload */

static void pick_topics(int *out, int k, int space)
{
    G.stampv++;
    for (int i = 0; i < k;) {
        int t = (int)rnd((uint32_t)space);
        if (G.stamp[t] == G.stampv) continue;
        G.stamp[t] = G.stampv;
        out[i++] = t;
    }
    qsort(out, (size_t)k, sizeof(int), cmp_int);
}

void run_workload(int wl, target_t *tg, result_t *r)
{
    wparams_t *w = &P[wl];
    memset(&G, 0, sizeof G);
    memset(r, 0, sizeof *r);
    G.wl = wl;
    G.w = w;
    G.pr = tg->proto;
    G.port = tg->port;
    G.nsub_ports = tg->nsub_ports;
    memcpy(G.sub_ports, tg->sub_ports, sizeof G.sub_ports);
    memcpy(G.sub_group, tg->sub_group, sizeof G.sub_group);
    if (G.nsub_ports) G.glat = xcalloc((size_t)G.nsub_ports, sizeof(hist_t));
    G.mpid = tg->mpid;
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    if (G.ep < 0) die("epoll_create1: %s", strerror(errno));
    G.tag = (uint32_t)(splitmix(&g_rng) & 0xffff);
    G.plen = snprintf(G.prefix, sizeof G.prefix, "kb%04x%c.", G.tag, wl_letter[wl]);
    double dur = w->duration > 0 ? w->duration : O.duration;

    int pubwl = (wl == W_LAT || wl == W_FAN);
    int nsub = w->subs, npub = pubwl ? w->pubs : 0;
    G.npubs = npub;
    G.n = nsub + npub;
    G.nsubids = pubwl ? nsub + (O.pubs_subscribe ? npub : 0) : (wl == W_IDLE ? nsub : 0);
    G.c = xcalloc((size_t)G.n, sizeof(conn_t));
    int stamp_n = w->space > G.nsubids ? w->space : G.nsubids;
    G.stamp = xcalloc((size_t)stamp_n + 1, sizeof(uint32_t));
    if (pubwl) {
        G.tsubs = xcalloc((size_t)w->space, sizeof(int *));
        G.tnsubs = xcalloc((size_t)w->space, sizeof(int));
    }
    int64_t poll_ivl = G.pr->push ? -1 : (int64_t)w->poll_ms * NS_PER_MS;
    for (int i = 0; i < G.n; i++) {
        conn_t *c = &G.c[i];
        c->idx = i;
        c->fd = -1;
        c->sub_id = c->pub_id = -1;
        c->poll_ivl = -1;
        if (wl == W_CHURN) {
            c->churn = 1;
            c->churn_sub_next = 1;
            c->ctopics = xmalloc(sizeof(int) * (size_t)w->tps);
            continue;
        }
        if (i < nsub) c->sub_id = i;
        else {
            c->pub_id = i - nsub;
            c->expq = xcalloc(MAX_DEPTH + 1, sizeof(uint64_t));
            if (O.pubs_subscribe) c->sub_id = i;
        }
        if (c->sub_id >= 0) {
            c->poll_ivl = poll_ivl;
            c->ntopics = w->tps;
            c->topics = xmalloc(sizeof(int) * (size_t)w->tps);
            pick_topics(c->topics, w->tps, w->space);
            if (pubwl) {
                if (w->space <= TBITS_MAX) {
                    c->tbits = xcalloc(((size_t)w->space + 63) / 64, sizeof(uint64_t));
                    for (int k = 0; k < c->ntopics; k++)
                        c->tbits[c->topics[k] >> 6] |= 1ULL << (c->topics[k] & 63);
                }
                c->last_key = xcalloc((size_t)npub, sizeof(uint64_t));
                for (int k = 0; k < c->ntopics; k++) {
                    int t = c->topics[k];
                    G.tsubs[t] = xrealloc(G.tsubs[t], sizeof(int) * (size_t)(G.tnsubs[t] + 1));
                    G.tsubs[t][G.tnsubs[t]++] = c->sub_id;
                }
            }
        }
    }
    r->target = tg->label;
    r->conns_wanted = G.n;

    if (tg->root && tg->mpid && !pid_alive(tg->mpid, 0)) { /* the engine was restarted */
        pid_t e = 0;
        for (int i = 0; i < 50 && !g_stop && !(e = find_engine(tg->root)); i++) sleep_ms(100);
        warnx_("engine pid %d is gone; now measuring pid %d", (int)tg->mpid, (int)e);
        tg->mpid = e;
    }
    G.mpid = tg->mpid;
    if (tg->mpid) r->base_rss_kb = proc_rss_kb(tg->mpid);
    G.phase = PH_SETUP;
    int64_t t_setup = now_ns();
    loop_until(setup_done, t_setup + (int64_t)O.setup_timeout * NS_PER_S);
    if (!setup_done() && !g_stop) {
        r->setup_incomplete = 1;
        warnx_("[%s] setup incomplete after %d s: %d of %d connections ready", wl_names[wl], O.setup_timeout,
               G.n_ready, G.n);
    }
    r->conns_ok = G.n_ready;
    if (g_verbose)
        fprintf(stderr, "kraken_bench: [%s] %d connections ready in %.2f s\n", wl_names[wl], G.n_ready,
                (double)(now_ns() - t_setup) / 1e9);

    r->srv_conns = -1;
    if (tg->after_setup && !g_stop) tg->after_setup(tg, r);

    uint64_t tk0 = 0, tk1 = 0, ttk0 = 0, ttk1 = 0, xtk0[MAX_XPIDS] = { 0 }, xtk1[MAX_XPIDS] = { 0 };
    int xok[MAX_XPIDS];
    for (int k = 0; k < tg->nxpid; k++) xok[k] = proc_cpu_ticks(tg->xpid[k], &xtk0[k]) == 0;
    long trss = 0;
    int64_t ts0 = now_ns();
    int cpu_ok = tg->mpid && proc_cpu_ticks(tg->mpid, &tk0) == 0;
    if (tg->root) tree_sample(tg->root, &ttk0, &trss);
    double gen0 = rusage_s();
    G.peak_rss_kb = 0;
    sample_rss();

    /* run */
    G.phase = PH_RUN;
    int64_t t0 = now_ns();
    for (int i = 0; i < G.n; i++) {
        conn_t *c = &G.c[i];
        if (c->state != CS_OPEN || !c->ready) continue;
        if (c->sub_id >= 0 && c->poll_ivl == 0) {
            send_get(c);
            conn_flush(c);
        } else if (c->sub_id >= 0 && c->poll_ivl > 0) {
            c->next_poll = t0 + (int64_t)rnd((uint32_t)(c->poll_ivl / 1000)) * 1000;
            timer_set(c, T_POLL, c->next_poll);
        }
        if (c->pub_id >= 0) {
            c->next_send = t0;
            pub_pump(c);
        }
        if (c->churn) churn_pump(c);
    }
    loop_until(NULL, t0 + (int64_t)(dur * 1e9));
    int64_t t1 = now_ns();
    double win = (double)(t1 - t0) / 1e9;
    double gen1 = rusage_s();
    if (wl == W_IDLE) {
        sample_rss();
        if (tg->mpid) r->rss_kb = proc_rss_kb(tg->mpid);
    }

    /* quiesce: let in-flight requests complete */
    G.phase = PH_QUIESCE;
    loop_until(quiesced, now_ns() + 15 * NS_PER_S);
    if (!quiesced() && !g_stop) {
        r->quiesce_timeout = 1;
        warnx_("[%s] %d requests still unanswered 15 s after the run", wl_names[wl],
               G.inflight_total + G.gets_inflight);
    }
    /* drain: poll until several rounds in a row return nothing (push: until nothing arrives) */
    if (pubwl && !g_stop) {
        G.phase = PH_DRAIN;
        if (G.pr->push) {
            G.last_recv = now_ns();
            loop_until(push_drained, now_ns() + 20 * NS_PER_S);
            G.drain_done = push_drained();
        } else {
            drain_start_round();
            loop_until(drained, now_ns() + 20 * NS_PER_S);
        }
        if (!G.drain_done && !g_stop) {
            r->drain_timeout = 1;
            warnx_("[%s] drain did not finish within 20 s", wl_names[wl]);
        }
    }
    sample_rss();
    int64_t ts1 = now_ns();
    if (tg->mpid) {
        if (proc_cpu_ticks(tg->mpid, &tk1) != 0) cpu_ok = 0;
        if (wl != W_IDLE) r->rss_kb = proc_rss_kb(tg->mpid);
    }
    for (int k = 0; k < tg->nxpid; k++)
        if (proc_cpu_ticks(tg->xpid[k], &xtk1[k]) != 0) xok[k] = 0;
    if (tg->root) {
        tree_sample(tg->root, &ttk1, &trss);
        r->have_tree = 1;
        r->tree_rss_kb = trss;
    }

    /* teardown: quit, wait for the server to close, then close whatever is left */
    G.phase = PH_TEARDOWN;
    for (int i = 0; i < G.n; i++) {
        conn_t *c = &G.c[i];
        if (c->state == CS_OPEN) {
            if (G.pr->quit(c)) {
                c->quit_sent = 1;
                conn_flush(c);
            } else {
                conn_close(c);
            }
        } else if (c->state == CS_CONNECTING) {
            conn_close(c);
        }
    }
    loop_until(all_closed, now_ns() + 5 * NS_PER_S);
    for (int i = 0; i < G.n; i++) conn_close(&G.c[i]);

    /* results */
    r->ran = 1;
    r->dur = win;
    r->req_s = (double)G.req_win / win;
    r->peak_rss_kb = G.peak_rss_kb;
    r->expected = G.expected;
    r->received = G.received;
    r->lost = (int64_t)G.expected - (int64_t)G.received;
    r->dup = G.dup;
    r->bad = G.bad;
    r->unexpected = G.unexpected;
    r->errors = G.errors;
    r->proto_err = G.proto_err;
    r->conn_fail = G.conn_fail;
    r->gen_cpu_pct = 100.0 * (gen1 - gen0) / win;
    r->p50_us = hist_pct(&G.lat, 0.50) / 1e3;
    r->p99_us = hist_pct(&G.lat, 0.99) / 1e3;
    for (int k = 0; G.glat && k < G.nsub_ports; k++) {
        r->gp50_us[k] = hist_pct(&G.glat[k], 0.50) / 1e3;
        r->gp99_us[k] = hist_pct(&G.glat[k], 0.99) / 1e3;
    }
    uint64_t ops;
    if (pubwl) {
        r->rate = (double)G.msgs_win / win;
        r->unit = "msg/s";
        r->deliv_s = (double)G.recv_win / win;
        r->op = "deliv";
        ops = G.received;
    } else if (wl == W_CHURN) {
        r->rate = (double)G.topic_ops_win / win;
        r->unit = "topic-op/s";
        r->deliv_s = NAN;
        r->op = "topic-op";
        ops = G.topic_ops_total;
    } else {
        r->rate = (double)G.polls_win / win;
        r->unit = "poll/s";
        r->deliv_s = NAN;
        r->op = "poll";
        ops = G.polls_total;
        if (r->base_rss_kb > 0 && r->rss_kb > 0 && r->conns_ok > 0)
            r->rss_per_conn_kb = (double)(r->rss_kb - r->base_rss_kb) / r->conns_ok;
    }
    double us_per_tick = 1e6 / (double)g_clk_tck;
    r->server_ticks = tk1 - tk0;
    if (!cpu_ok) tk1 = tk0 = 0;
    r->srv_cpu_pct = cpu_ok ? 100.0 * (double)(tk1 - tk0) / (double)g_clk_tck / ((double)(ts1 - ts0) / 1e9) : NAN;
    r->cpu_us_per_op = (cpu_ok && ops) ? (double)(tk1 - tk0) * us_per_tick / (double)ops : NAN;
    r->tree_cpu_us_per_op = (tg->root && ops) ? (double)(ttk1 - ttk0) * us_per_tick / (double)ops : NAN;
    for (int k = 0; k < tg->nxpid; k++) {
        double t = (double)(xtk1[k] - xtk0[k]);
        r->x_cpu_pct[k] = xok[k] ? 100.0 * t / (double)g_clk_tck / ((double)(ts1 - ts0) / 1e9) : NAN;
        r->x_cpu_us_per_op[k] = (xok[k] && ops) ? t * us_per_tick / (double)ops : NAN;
    }

    /* free */
    for (int i = 0; i < G.n; i++) {
        conn_t *c = &G.c[i];
        buf_free(&c->rb);
        buf_free(&c->wb);
        free(c->topics);
        free(c->tbits);
        free(c->last_key);
        free(c->expq);
        free(c->ctopics);
    }
    if (G.tsubs)
        for (int t = 0; t < w->space; t++) free(G.tsubs[t]);
    free(G.tsubs);
    free(G.tnsubs);
    free(G.stamp);
    free(G.c);
    free(G.heap);
    free(G.glat);
    free(G.scratch);
    close(G.ep);
}
