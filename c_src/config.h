/* config.h - the engine's configuration and its one table of options.
 *
 * The same option names as the OTP application environment.  Values arrive
 * either as ei terms on the control channel (control.c) or as strings on the
 * standalone command line (main.c); both go through config_set(), so the
 * names, ranges and error messages are defined once, here. */
#ifndef KRAKEN_CONFIG_H
#define KRAKEN_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

struct engine_config {
    char listen_ip[64];
    int port;
    int redis_port;            /* -1: the Redis protocol is off */
    int http_port;             /* -1: no HTTP endpoint (/metrics, /readyz...: http.c) */
    uint32_t engine_restarts;  /* how many times the node restarted the engine before */
    uint32_t cluster_wait;     /* 1: in a cluster; accept no client before the first view */
    char redis_password[256];  /* empty: no AUTH needed */
    uint32_t max_clients;
    uint32_t num_shards;
    uint32_t retain_per_shard;
    size_t retain_bytes_per_shard;
    uint32_t fanout_warn;
    uint32_t topics_warn;
    uint32_t idle_timeout_secs;
    size_t max_request_bytes;
    size_t max_queue_bytes;
    size_t max_memory_bytes;   /* 0: no global budget (budget.c) */
    enum log_level log_level;
};

void engine_config_defaults(struct engine_config *c);

/* A value: an integer, or text (a binary, string or atom on the Erlang side). */
struct config_value {
    int is_int;
    long long i;
    const char *text;
};

enum config_result { CONFIG_OK, CONFIG_UNKNOWN, CONFIG_BAD };

/* Sets option `name`; CONFIG_BAD writes a one-line reason into err. */
enum config_result config_set(struct engine_config *c, const char *name,
                              const struct config_value *v, char *err, size_t errlen);

/* Prints every option as an Erlang term per line (`kraken_engine --options`). */
void config_print_options(FILE *f);

#endif
