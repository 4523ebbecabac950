/* main.c - kraken_engine entry point.
 *
 * Normally started by the Erlang application as a port program: the
 * configuration arrives on the control channel (control.c).  For debugging,
 * benchmarks and leak checks it also runs on its own:
 *
 *   kraken_engine --standalone [--<option> <value>]...
 *
 * `kraken_engine --options` prints the option table (names, types, ranges,
 * defaults) as Erlang terms, which the build writes to priv/ for kraken_config.
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
#include "loop.h"
#include "server.h"

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

static int standalone_config(int argc, char **argv, struct engine_config *c)
{
    engine_config_defaults(c);
    for (int i = 2; i < argc; i += 2) {
        const char *name = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val || strncmp(name, "--", 2) != 0) {
            fprintf(stderr, "usage: kraken_engine --standalone [--option value]...\n");
            return -1;
        }
        char *end;
        errno = 0;
        long long n = strtoll(val, &end, 10);
        struct config_value v = {*val && !*end && !errno, n, val};
        char err[256];
        enum config_result r = config_set(c, name + 2, &v, err, sizeof err);
        if (r != CONFIG_OK) {
            fprintf(stderr, "kraken_engine: %s\n",
                    r == CONFIG_BAD ? err : "unknown option");
            return -1;
        }
    }
    log_min_level = c->log_level;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--options") == 0) {
        config_print_options(stdout);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "kraken_engine: cannot create the event loop\n");
        return 1;
    }
    /* Signals first: nothing is listening yet if this fails. */
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    if (!sigint || !sigterm || evsignal_add(sigint, NULL) < 0 || evsignal_add(sigterm, NULL) < 0) {
        fprintf(stderr, "kraken_engine: cannot watch SIGINT and SIGTERM (out of memory)\n");
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
        printf("listening %d\n", server_port(&srv, PROTO_KIND_KRAKEN));
        if (server_port(&srv, PROTO_KIND_REDIS) >= 0)
            printf("listening redis %d\n", server_port(&srv, PROTO_KIND_REDIS));
        if (srv.eng.http_port >= 0)
            printf("listening http %d\n", srv.eng.http_port);
        fflush(stdout);
    } else if (argc > 1) {
        fprintf(stderr, "usage: kraken_engine [--options | --standalone [--option value]...]\n"
                        "(without arguments it expects to be an Erlang port)\n");
        return 2;
    } else {
        char err[256];
        if (control_start(base, &srv, err, sizeof err) < 0) {
            fprintf(stderr, "kraken_engine: %s\n", err);
            return 2;
        }
    }

    loop_run(&srv.loop, base);

    server_stop(&srv);
    loop_free(&srv.loop);
    control_stop();
    event_free(sigint);
    event_free(sigterm);
    event_base_free(base);
    return 0;
}
