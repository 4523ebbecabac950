/* cluster_control.c - control-channel requests of the cluster; see
 * cluster_control.h.
 *
 *   {cluster, {Self, [{Name, Host, Port} | {Name, Host, Port, PollMs}]}}
 *   {cluster, {Self, Cores, Owners, Alt}}    -> ok | {error, Reason}
 *       Self, Name, Host: binaries (Host numeric); Port: integer.  The live
 *       cores (Self among them on a core), as kraken_cluster sees them, and
 *       the static upstreams (PollMs: poll interval if one refuses push).
 *       Owners, Alt: lists of names among them: those that own topics, and
 *       during a move the other owner set (docs/cluster.md, "Moves");
 *       without them (or empty), every member owns.
 *   {cluster, {Self, Cores, Owners, Alt, MissingOwners, MissingAlt}}
 *       The same, with the names of the cores that the view makes owners
 *       (or, during a move, the other set's) but that are not live here:
 *       their topics are unavailable (docs/cluster.md, "Partitions").
 *   cluster_synced                           -> true | false: every link
 *       answered what was sent after the last {cluster, ...}
 *   {cluster_owner, Topic}                   -> NodeName | local
 *   ping                                     -> pong (the engine answers: it is not hung)
 *   cluster_status                           -> [{Name, State, Host, Port, Topics,
 *                                                 Received, Sent, Dropped, Links}]
 *       State: self | up | connecting | down | polling. */
#include "cluster_control.h"

#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "log.h"
#include "proto_link.h"
#include "server.h"

#define MAX_CORES 1024
#define RELEASE_MAX_MS 2000 /* a link's first attempt is given up after 1.5 s */
#define MAX_NAME 1024

/* Decodes a binary (or string/atom) of at most max-1 bytes into a fresh
 * NUL-terminated buffer; returns it, or NULL. */
static char *decode_bin(const char *buf, int *idx, size_t max, size_t *len)
{
    int type, size;
    if (ei_get_type(buf, idx, &type, &size) < 0 || size < 0 || (size_t)size >= max)
        return NULL;
    char *out = malloc((size_t)size + MAXATOMLEN_UTF8 + 1);
    if (!out)
        return NULL;
    long l = 0;
    if (type == ERL_BINARY_EXT && ei_decode_binary(buf, idx, out, &l) == 0) {
        out[l] = 0;
        *len = (size_t)l;
        return out;
    }
    if ((type == ERL_STRING_EXT && ei_decode_string(buf, idx, out) == 0) ||
        ((type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_EXT || type == ERL_ATOM_UTF8_EXT ||
          type == ERL_SMALL_ATOM_UTF8_EXT) &&
         ei_decode_atom(buf, idx, out) == 0)) {
        *len = strlen(out);
        return out;
    }
    free(out);
    return NULL;
}

static void encode_error(ei_x_buff *x, const char *why)
{
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "error");
    ei_x_encode_binary(x, why, (long)strlen(why));
}

/* Decodes a list of names; sets flag[i] for every member named.  Returns
 * 0, or -1 when malformed. */
static int decode_names(const char *buf, int *idx, const struct cluster_member *m, int n,
                        bool *flag)
{
    int count;
    if (ei_decode_list_header(buf, idx, &count) < 0 || count < 0 || count > MAX_CORES)
        return -1;
    for (int i = 0; i < count; i++) {
        size_t len;
        char *name = decode_bin(buf, idx, MAX_NAME, &len);
        if (!name)
            return -1;
        for (int j = 0; j < n; j++)
            if (m[j].name_len == len && !memcmp(m[j].name, name, len))
                flag[j] = true;
        free(name);
    }
    return count ? ei_decode_list_header(buf, idx, &count) : 0; /* the tail */
}

/* Decodes a list of names into fresh strings appended to texts (the caller
 * frees them), pointed to by names[0..*count).  Returns 0, or -1. */
static int decode_missing(const char *buf, int *idx, char **texts, int *ntexts,
                          struct cluster_name *names, size_t *count)
{
    int n;
    if (ei_decode_list_header(buf, idx, &n) < 0 || n < 0 || n > MAX_CORES)
        return -1;
    for (int i = 0; i < n; i++) {
        size_t len;
        char *name = decode_bin(buf, idx, MAX_NAME, &len);
        if (!name)
            return -1;
        texts[(*ntexts)++] = name;
        names[i] = (struct cluster_name){name, len};
    }
    *count = (size_t)n;
    return n ? ei_decode_list_header(buf, idx, &n) : 0; /* the tail */
}

/* The cluster's network side (struct cluster_net): this engine's server. */
static struct conn *cluster_connect(void *srv, const char *ip, int port, char *err,
                                    size_t errlen)
{
    return server_connect(srv, &proto_link, ip, port, err, errlen);
}

static void cluster_on_stop(struct server *srv)
{
    (void)srv;
    cluster_stop();
}

static void handle_cluster(struct server *srv, const char *buf, int *idx, ei_x_buff *x)
{
    int arity, n = 0;
    size_t self_len;
    char *self = NULL;
    struct cluster_member *m = NULL;
    char **texts = NULL;
    int ntexts = 0;
    char err[256] = "malformed cluster request";
    int top;
    struct cluster_name *miss = NULL;
    size_t nmiss[2] = {0, 0};
    if (ei_decode_tuple_header(buf, idx, &top) < 0 || (top != 2 && top != 4 && top != 6) ||
        !(self = decode_bin(buf, idx, MAX_NAME, &self_len)) ||
        ei_decode_list_header(buf, idx, &n) < 0 || n < 0 || n > MAX_CORES)
        goto bad;
    m = calloc((size_t)n + 1, sizeof *m);
    texts = calloc(2 * (size_t)n + 2 * MAX_CORES + 1, sizeof *texts);
    miss = calloc(2 * MAX_CORES, sizeof *miss);
    if (!m || !texts || !miss)
        goto bad;
    for (int i = 0; i < n; i++) {
        long long port;
        size_t hl;
        long long poll = 0;
        char kind[MAXATOMLEN_UTF8] = "";
        if (ei_decode_tuple_header(buf, idx, &arity) < 0 || arity < 3 || arity > 5 ||
            !(texts[ntexts++] = decode_bin(buf, idx, MAX_NAME, &m[i].name_len)) ||
            !(texts[ntexts++] = decode_bin(buf, idx, 64, &hl)) ||
            ei_decode_longlong(buf, idx, &port) < 0 ||
            (arity >= 4 && ei_decode_longlong(buf, idx, &poll) < 0) ||
            (arity == 5 && (ei_decode_atom(buf, idx, kind) < 0 || strcmp(kind, "parent"))))
            goto bad;
        m[i].parent = arity == 5;
        m[i].poll_ms = poll >= 0 && poll <= 3600000 ? (int)poll : -1;
        m[i].name = texts[ntexts - 2];
        m[i].host = texts[ntexts - 1];
        m[i].port = port >= 0 && port <= 65535 ? (int)port : -1;
        m[i].own = m[i].alt = top == 2;
    }
    if (top >= 4) {
        bool *own = calloc((size_t)n + 1, sizeof *own), *alt = calloc((size_t)n + 1, sizeof *alt);
        int rc = own && alt && (n == 0 || ei_decode_list_header(buf, idx, &arity) == 0) &&
                         decode_names(buf, idx, m, n, own) == 0 &&
                         decode_names(buf, idx, m, n, alt) == 0 ? 0 : -1;
        for (int i = 0; i < n && rc == 0; i++) {
            m[i].own = own[i];
            m[i].alt = alt[i];
        }
        free(own);
        free(alt);
        if (rc < 0)
            goto bad;
    }
    if (top == 6 &&
        (decode_missing(buf, idx, texts, &ntexts, miss, &nmiss[0]) < 0 ||
         decode_missing(buf, idx, texts, &ntexts, miss + MAX_CORES, &nmiss[1]) < 0))
        goto bad;
    struct cluster_net net = {&srv->eng, srv->base, cluster_connect, srv, server_doom, server_kick};
    srv->on_stop = cluster_on_stop;
    if (cluster_configure(&net, self, self_len, m, (size_t)n, miss, nmiss[0],
                          miss + MAX_CORES, nmiss[1], err, sizeof err) < 0)
        goto bad;
    /* The first view: clients held until now are served once its links are
     * up or failed once (their publishes would be refused meanwhile). */
    if (server_release(srv, cluster_settled, RELEASE_MAX_MS) < 0)
        klog(LOG_ERROR, "cluster: out of memory waiting for the links; accepting clients now");
    ei_x_encode_atom(x, "ok");
    goto out;
bad:
    encode_error(x, err);
out:
    for (int i = 0; i < ntexts; i++)
        free(texts[i]);
    free(texts);
    free(miss);
    free(m);
    free(self);
}

int cluster_control_tuple(struct server *srv, const char *tag, const char *buf, int *idx,
                          ei_x_buff *x)
{
    if (strcmp(tag, "cluster") == 0) {
        handle_cluster(srv, buf, idx, x);
        return 1;
    }
    if (strcmp(tag, "cluster_owner") == 0) {
        size_t len;
        char *topic = decode_bin(buf, idx, 1u << 20, &len);
        const char *name;
        size_t nlen;
        if (!topic)
            encode_error(x, "expected a topic");
        else if (cluster_owner_name(topic, len, &name, &nlen))
            ei_x_encode_binary(x, name, (long)nlen);
        else
            ei_x_encode_atom(x, "local");
        free(topic);
        return 1;
    }
    return 0;
}

int cluster_control_atom(struct server *srv, const char *atom, ei_x_buff *x)
{
    static const char *const states[] = {"self", "up", "connecting", "down", "polling"};
    (void)srv;
    if (strcmp(atom, "ping") == 0 || strcmp(atom, "cluster_fresh") == 0) {
        /* kraken_cluster's health check; cluster_fresh also confirms the view */
        if (atom[0] == 'c')
            cluster_fresh_confirm();
        ei_x_encode_atom(x, "pong");
        return 1;
    }
    if (strcmp(atom, "cluster_synced") == 0) {
        ei_x_encode_atom(x, cluster_synced() ? "true" : "false");
        return 1;
    }
    if (strcmp(atom, "cluster_status") != 0)
        return 0;
    size_t n = cluster_status(NULL, 0);
    struct cluster_core_status *st = calloc(n + 1, sizeof *st);
    if (!st) {
        encode_error(x, "out of memory");
        return 1;
    }
    n = cluster_status(st, n);
    for (size_t i = 0; i < n; i++) {
        ei_x_encode_list_header(x, 1);
        ei_x_encode_tuple_header(x, 9);
        ei_x_encode_binary(x, st[i].name, (long)st[i].name_len);
        ei_x_encode_atom(x, states[st[i].state]);
        ei_x_encode_binary(x, st[i].host, (long)strlen(st[i].host));
        ei_x_encode_long(x, st[i].port);
        ei_x_encode_ulonglong(x, st[i].topics);
        ei_x_encode_ulonglong(x, st[i].received);
        ei_x_encode_ulonglong(x, st[i].sent);
        ei_x_encode_ulonglong(x, st[i].dropped);
        ei_x_encode_ulonglong(x, st[i].links);
    }
    ei_x_encode_empty_list(x);
    free(st);
    return 1;
}
