/* main.c - kraken_engine entry point.
 *
 * Normally started by the Erlang application as a port program: the
 * configuration arrives on the control channel (control.c).  For debugging,
 * benchmarks and leak checks it also runs on its own:
 *
 *   kraken_engine --standalone [--<option> <value>]...
 *
 * with the option names of the application environment (e.g.
 * --tcp_server_port 0 --client_idle_timeout_secs 5); it then logs to stderr,
 * prints "listening <port>" on stdout, and exits cleanly on SIGINT/SIGTERM. */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "log.h"
#include "server.h"

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

static int parse_num(const char *s, unsigned long long min, unsigned long long max,
                     unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

static int standalone_config(int argc, char **argv, struct engine_config *c)
{
    engine_config_defaults(c);
    for (int i = 2; i < argc; i += 2) {
        const char *name = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long long v;
        if (!val || strncmp(name, "--", 2) != 0)
            goto usage;
        name += 2;
        if (strcmp(name, "listen_ip") == 0) {
            snprintf(c->listen_ip, sizeof c->listen_ip, "%s", val);
            continue;
        }
        if (strcmp(name, "log_level") == 0) {
            enum log_level l;
            if (log_level_parse(val, &l) < 0)
                goto bad;
            log_min_level = l;
            continue;
        }
        if (parse_num(val, 0, 1ULL << 40, &v) < 0)
            goto bad;
        if (strcmp(name, "tcp_server_port") == 0 && v <= 65535)
            c->port = (int)v;
        else if (strcmp(name, "max_tcp_clients") == 0 && v >= 1 && v <= UINT32_MAX)
            c->max_clients = (uint32_t)v;
        else if (strcmp(name, "num_router_shards") == 0 && v >= 1 && v <= 65536)
            c->num_shards = (uint32_t)v;
        else if (strcmp(name, "messages_stored_per_router_shard") == 0 && v >= 1 && v <= 100000000)
            c->retain_per_shard = (uint32_t)v;
        else if (strcmp(name, "router_min_fanout_to_warn") == 0 && v >= 1 && v <= UINT32_MAX)
            c->fanout_warn = (uint32_t)v;
        else if (strcmp(name, "router_min_publish_to_topics_to_warn") == 0 && v >= 1 && v <= UINT32_MAX)
            c->topics_warn = (uint32_t)v;
        else if (strcmp(name, "client_idle_timeout_secs") == 0 && v >= 1 && v <= 100000000)
            c->idle_timeout_secs = (uint32_t)v;
        else if (strcmp(name, "max_request_bytes") == 0 && v >= 1024)
            c->max_request_bytes = (size_t)v;
        else if (strcmp(name, "max_client_queue_bytes") == 0 && v >= 1024)
            c->max_queue_bytes = (size_t)v;
        else
            goto bad;
        continue;
    bad:
        fprintf(stderr, "kraken_engine: bad option %s %s\n", argv[i], val);
        return -1;
    }
    return 0;
usage:
    fprintf(stderr, "usage: kraken_engine --standalone [--option value]...\n");
    return -1;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "kraken_engine: cannot create the event loop\n");
        return 1;
    }
    static struct server srv;
    int standalone = argc > 1 && strcmp(argv[1], "--standalone") == 0;
    if (standalone) {
        struct engine_config cfg;
        char err[256];
        if (standalone_config(argc, argv, &cfg) < 0)
            return 2;
        if (server_start(&srv, base, &cfg, err, sizeof err) < 0) {
            fprintf(stderr, "kraken_engine: %s\n", err);
            return 2;
        }
        printf("listening %d\n", srv.port);
        fflush(stdout);
    } else if (argc > 1) {
        fprintf(stderr, "usage: kraken_engine [--standalone [--option value]...]\n"
                        "(without arguments it expects to be an Erlang port)\n");
        return 2;
    } else if (control_start(base, &srv) < 0) {
        fprintf(stderr, "kraken_engine: cannot open the control channel\n");
        return 1;
    }
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    evsignal_add(sigint, NULL);
    evsignal_add(sigterm, NULL);

    event_base_dispatch(base);

    server_stop(&srv);
    control_stop();
    event_free(sigint);
    event_free(sigterm);
    event_base_free(base);
    return 0;
}
