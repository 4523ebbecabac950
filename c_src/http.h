/* http.h - the engine's HTTP endpoint for operators, on http_port (off by
 * default), bound to listen_ip, served by libevent's evhttp in the engine's
 * own event loop:
 *
 *   GET /metrics   Prometheus text format 0.0.4 (metrics.c)
 *   GET /healthz   200 "ok": the engine's loop answers
 *   GET /readyz    200 "ok", or 503 and a one-line reason (health.h)
 *   GET /connz     JSON page of client connections   ?offset=&limit=
 *   GET /topics    JSON page of topics               ?offset=&limit=
 *
 * limit: 1..10000 (default 1000); offset: where the previous page's "next"
 * said to continue.  Anything else is 404; a bad parameter 400. */
#ifndef KRAKEN_HTTP_H
#define KRAKEN_HTTP_H

#include <stddef.h>

struct engine;
struct event_base;
struct http;

/* Starts the endpoint in base when eng->cfg.http_port >= 0 (sets *hp and
 * eng->http_port); /readyz answers what ready(arg, why, len) says
 * (server_ready()).  Returns -1 with a reason in err when it cannot listen
 * (http_stop() then frees what was made). */
int http_start(struct http **hp, struct event_base *base, struct engine *eng,
               int (*ready)(void *arg, char *why, size_t len), void *arg, char *err,
               size_t errlen);
void http_stop(struct http **hp, struct engine *eng);

#endif
