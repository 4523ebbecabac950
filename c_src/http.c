/* http.c - the operators' HTTP endpoint; see http.h. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "engine.h"
#include "log.h"
#include "metrics.h"

struct http {
    struct evhttp *h;
    struct evconnlistener *l;
    struct event *resume;    /* re-enables accepting after EMFILE */
    struct engine *eng;
    int (*ready)(void *arg, char *why, size_t len); /* server_ready() */
    void *ready_arg;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(b, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static void send_buffer(struct evhttp_request *req, struct evbuffer *b, const char *type)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, 200, "OK", b);
}

static void metrics_cb(struct evhttp_request *req, void *arg)
{
    struct http *ht = arg;
    struct engine *eng = ht->eng;
    struct metrics_shard *shards = malloc(eng->router.cfg.num_shards * sizeof *shards);
    struct evbuffer *b = evbuffer_new();
    struct stats_snapshot snap;
    struct metrics_input in;
    if (shards && b) {
        metrics_collect(eng, &snap, shards, &in);
        if (metrics_render(&in, b) == 0)
            send_buffer(req, b, "text/plain; version=0.0.4; charset=utf-8");
        else
            evhttp_send_error(req, 500, "out of memory");
    } else {
        evhttp_send_error(req, 500, "out of memory");
    }
    free(shards);
    if (b)
        evbuffer_free(b);
}

static void healthz_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    reply_text(req, 200, "OK", "ok\n");
}

static void readyz_cb(struct evhttp_request *req, void *arg)
{
    struct http *ht = arg;
    char why[200], line[220];
    if (ht->ready(ht->ready_arg, why, sizeof why)) {
        reply_text(req, 200, "OK", "ok\n");
        return;
    }
    snprintf(line, sizeof line, "not ready: %s\n", why);
    reply_text(req, 503, "Service Unavailable", line);
}

/* Parses a decimal in [min, max]; -1 if it is not one. */
static int parse_num(const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
    if (!*s || strlen(s) > 19)
        return -1;
    uint64_t n = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (n < min || n > max)
        return -1;
    *v = n;
    return 0;
}

/* ?offset=&limit= of a page; sends 400 and returns -1 when they are bad. */
static int page_params(struct evhttp_request *req, uint64_t *offset, uint32_t *limit)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq q;
    q.tqh_first = NULL;
    q.tqh_last = &q.tqh_first;
    *offset = 0;
    *limit = METRICS_PAGE_DEFAULT;
    if (!query)
        return 0;
    const char *bad = NULL;
    if (evhttp_parse_query_str(query, &q) < 0) {
        bad = "bad request: malformed query string\n";
    } else {
        for (struct evkeyval *kv = q.tqh_first; kv && !bad; kv = kv->next.tqe_next) {
            uint64_t v;
            if (strcmp(kv->key, "offset") == 0) {
                if (parse_num(kv->value, 0, UINT32_MAX, &v) < 0)
                    bad = "bad request: offset must be an integer 0..4294967295\n";
                else
                    *offset = v;
            } else if (strcmp(kv->key, "limit") == 0) {
                if (parse_num(kv->value, 1, METRICS_PAGE_MAX, &v) < 0)
                    bad = "bad request: limit must be an integer 1..10000\n";
                else
                    *limit = (uint32_t)v;
            } else {
                bad = "bad request: the parameters are offset and limit\n";
            }
        }
    }
    evhttp_clear_headers(&q);
    if (bad) {
        reply_text(req, 400, "Bad Request", bad);
        return -1;
    }
    return 0;
}

/* A paged JSON answer: page(ht, offset, limit, out) writes it. */
static void paged(struct evhttp_request *req, struct http *ht,
                  void (*page)(struct http *ht, uint64_t offset, uint32_t limit,
                               struct evbuffer *out))
{
    uint64_t offset;
    uint32_t limit;
    if (page_params(req, &offset, &limit) < 0)
        return;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    page(ht, offset, limit, b);
    send_buffer(req, b, "application/json");
    evbuffer_free(b);
}

static void topics_page(struct http *ht, uint64_t offset, uint32_t limit, struct evbuffer *out)
{
    metrics_topics_page(&ht->eng->router.topics, offset, limit, out);
}

static void conns_page(struct http *ht, uint64_t offset, uint32_t limit, struct evbuffer *out)
{
    metrics_conns_page(ht->eng, offset, limit, engine_now_ms(), out);
}

static void topics_cb(struct evhttp_request *req, void *arg)
{
    paged(req, arg, topics_page);
}

static void connz_cb(struct evhttp_request *req, void *arg)
{
    paged(req, arg, conns_page);
}

static void notfound_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    reply_text(req, 404, "Not Found",
               "not found: the paths are /metrics, /healthz, /readyz, /connz, /topics\n");
}

/* The endpoint whose listener is l.  The error callback cannot take it from
 * its argument: evhttp_bind_listener() makes the listener's argument
 * evhttp's own bound-socket record (reading it as a struct http crashed the
 * engine on the first EMFILE).  An engine runs at most one endpoint. */
static struct http *http_of_listener;

/* Out of descriptors: stop accepting for a while instead of spinning (as
 * server.c does for the client listeners). */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct http *ht = http_of_listener;
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (!ht || ht->l != l)
        return;
    static struct log_recur recur; /* (once per LOG_RECUR_MS while it lasts) */
    uint64_t quiet;
    if (log_recur_due(&recur, engine_now_ms(), &quiet))
        klog(LOG_WARNING, "http accept: %s (%" PRIu64 " more times since the last such line)",
             evutil_socket_error_to_string(err), quiet);
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        evconnlistener_disable(l);
        struct timeval tv = {0, 200000};
        evtimer_add(ht->resume, &tv);
    }
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http *ht = arg;
    (void)fd;
    (void)what;
    evconnlistener_enable(ht->l);
}

int http_start(struct http **hp, struct event_base *base, struct engine *eng,
               int (*ready)(void *arg, char *why, size_t len), void *arg, char *err,
               size_t errlen)
{
    const struct engine_config *cfg = &eng->cfg;
    if (cfg->http_port < 0)
        return 0;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sslen;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, cfg->listen_ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)cfg->http_port);
        sslen = sizeof *in;
    } else if (inet_pton(AF_INET6, cfg->listen_ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)cfg->http_port);
        sslen = sizeof *in6;
    } else {
        snprintf(err, errlen, "bad listen_ip %s", cfg->listen_ip);
        return -1;
    }
    struct http *ht = calloc(1, sizeof *ht);
    if (!ht) {
        snprintf(err, errlen, "out of memory starting the HTTP endpoint");
        return -1;
    }
    *hp = ht;
    ht->eng = eng;
    ht->ready = ready;
    ht->ready_arg = arg;
    ht->h = evhttp_new(base);
    ht->resume = evtimer_new(base, resume_cb, ht);
    if (!ht->h || !ht->resume) {
        snprintf(err, errlen, "out of memory starting the HTTP endpoint");
        return -1;
    }
    ht->l = evconnlistener_new_bind(base, NULL, NULL,
                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                        LEV_OPT_CLOSE_ON_EXEC,
                                    128, (struct sockaddr *)&ss, (int)sslen);
    if (!ht->l) {
        snprintf(err, errlen, "listen %s port %d (http): %s", cfg->listen_ip, cfg->http_port,
                 strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(ht->l, accept_error_cb);
    http_of_listener = ht;
    if (!evhttp_bind_listener(ht->h, ht->l)) {
        evconnlistener_free(ht->l);
        ht->l = NULL;
        snprintf(err, errlen, "out of memory starting the HTTP endpoint");
        return -1;
    }
    evhttp_set_allowed_methods(ht->h, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_timeout(ht->h, 10);
    evhttp_set_max_headers_size(ht->h, 16384);
    evhttp_set_max_body_size(ht->h, 4096);
    evhttp_set_cb(ht->h, "/metrics", metrics_cb, ht);
    evhttp_set_cb(ht->h, "/healthz", healthz_cb, ht);
    evhttp_set_cb(ht->h, "/readyz", readyz_cb, ht);
    evhttp_set_cb(ht->h, "/connz", connz_cb, ht);
    evhttp_set_cb(ht->h, "/topics", topics_cb, ht);
    evhttp_set_gencb(ht->h, notfound_cb, ht);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(evconnlistener_get_fd(ht->l), (struct sockaddr *)&bound, &blen);
    eng->http_port =
        ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                          : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

void http_stop(struct http **hp, struct engine *eng)
{
    struct http *ht = *hp;
    if (!ht)
        return;
    if (http_of_listener == ht)
        http_of_listener = NULL;
    if (ht->h)
        evhttp_free(ht->h); /* frees the bound listener too */
    else if (ht->l)
        evconnlistener_free(ht->l);
    if (ht->resume)
        event_free(ht->resume);
    free(ht);
    *hp = NULL;
    eng->http_port = -1;
}
