/* config.c - engine options: defaults, names, ranges; see config.h. */
#include "config.h"

#include <stdio.h>
#include <string.h>

void engine_config_defaults(struct engine_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->listen_ip, sizeof c->listen_ip, "0.0.0.0");
    c->port = 12355;
    c->redis_port = -1;
    c->http_port = -1;
    c->max_clients = 1000;
    c->num_shards = 4;
    c->retain_per_shard = 10000;
    c->retain_bytes_per_shard = 64u << 20;
    c->fanout_warn = 1000;
    c->topics_warn = 1000;
    c->idle_timeout_secs = 3600;
    c->max_request_bytes = 16u << 20;
    c->max_queue_bytes = 32u << 20;
    c->log_level = LOG_INFO;
}

enum field_kind { F_INT, F_U32, F_SIZE };

static const struct {
    const char *name;
    long long min, max;
    size_t offset;
    enum field_kind kind;
} int_options[] = {
    {"tcp_server_port", 0, 65535, offsetof(struct engine_config, port), F_INT},
    {"redis_port", -1, 65535, offsetof(struct engine_config, redis_port), F_INT},
    {"http_port", -1, 65535, offsetof(struct engine_config, http_port), F_INT},
    {"engine_restarts", 0, UINT32_MAX, offsetof(struct engine_config, engine_restarts), F_U32},
    {"cluster_wait", 0, 1, offsetof(struct engine_config, cluster_wait), F_U32},
    {"max_tcp_clients", 1, UINT32_MAX, offsetof(struct engine_config, max_clients), F_U32},
    {"num_router_shards", 1, 65536, offsetof(struct engine_config, num_shards), F_U32},
    {"messages_stored_per_router_shard", 1, 100000000,
     offsetof(struct engine_config, retain_per_shard), F_U32},
    {"bytes_stored_per_router_shard", 1024, 1LL << 40,
     offsetof(struct engine_config, retain_bytes_per_shard), F_SIZE},
    {"router_min_fanout_to_warn", 1, UINT32_MAX, offsetof(struct engine_config, fanout_warn),
     F_U32},
    {"router_min_publish_to_topics_to_warn", 1, UINT32_MAX,
     offsetof(struct engine_config, topics_warn), F_U32},
    {"client_idle_timeout_secs", 1, 100000000,
     offsetof(struct engine_config, idle_timeout_secs), F_U32},
    /* At most 2 GiB: topic lengths and counts are 32-bit inside the engine. */
    {"max_request_bytes", 1024, 1LL << 31, offsetof(struct engine_config, max_request_bytes),
     F_SIZE},
    {"max_client_queue_bytes", 1024, 1LL << 31, offsetof(struct engine_config, max_queue_bytes),
     F_SIZE},
    /* 0: off.  Clients' buffers and queues plus retention (budget.c). */
    {"max_memory_bytes", 0, 1LL << 44, offsetof(struct engine_config, max_memory_bytes), F_SIZE},
};

static enum config_result bad(char *err, size_t errlen, const char *name, const char *why)
{
    snprintf(err, errlen, "bad value for option %.64s: %s", name, why);
    return CONFIG_BAD;
}

enum config_result config_set(struct engine_config *c, const char *name,
                              const struct config_value *v, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof int_options / sizeof int_options[0]; i++) {
        if (strcmp(name, int_options[i].name) != 0)
            continue;
        if (!v->is_int || v->i < int_options[i].min || v->i > int_options[i].max) {
            char why[96];
            snprintf(why, sizeof why, "expected an integer %lld..%lld", int_options[i].min,
                     int_options[i].max);
            return bad(err, errlen, name, why);
        }
        char *field = (char *)c + int_options[i].offset;
        if (int_options[i].kind == F_INT)
            *(int *)field = (int)v->i;
        else if (int_options[i].kind == F_U32)
            *(uint32_t *)field = (uint32_t)v->i;
        else
            *(size_t *)field = (size_t)v->i;
        return CONFIG_OK;
    }
    if (strcmp(name, "listen_ip") == 0) {
        if (v->is_int || strlen(v->text) >= sizeof c->listen_ip)
            return bad(err, errlen, name, "expected a numeric IPv4 or IPv6 address");
        snprintf(c->listen_ip, sizeof c->listen_ip, "%s", v->text);
        return CONFIG_OK;
    }
    if (strcmp(name, "redis_password") == 0) {
        if (v->is_int || strlen(v->text) >= sizeof c->redis_password)
            return bad(err, errlen, name, "expected a string of at most 255 bytes");
        snprintf(c->redis_password, sizeof c->redis_password, "%s", v->text);
        return CONFIG_OK;
    }
    if (strcmp(name, "log_level") == 0) {
        if (v->is_int || log_level_parse(v->text, &c->log_level) < 0)
            return bad(err, errlen, name, "expected debug, info, warn or error");
        return CONFIG_OK;
    }
    return CONFIG_UNKNOWN;
}

/* One Erlang term per line, read by kraken_config (file:consult/1) so that
 * the ranges and defaults above are the only ones: {Name, Type, Min, Max,
 * Default} with Type integer (Min..Max inclusive), ip_address or log_level
 * (Min and Max undefined); kraken_config also knows Type string (a
 * non-empty string, Default a binary or undefined).  Every row of int_options
 * is printed by the loop; an option that config_set() handles outside that
 * table needs its own line here, or the node refuses it as unknown. */
void config_print_options(FILE *f)
{
    struct engine_config d;
    engine_config_defaults(&d);
    fprintf(f, "%%%% kraken_engine --options: the engine's options (c_src/config.c).\n");
    for (size_t i = 0; i < sizeof int_options / sizeof int_options[0]; i++) {
        const char *field = (const char *)&d + int_options[i].offset;
        long long def;
        if (int_options[i].kind == F_INT)
            def = *(const int *)field;
        else if (int_options[i].kind == F_U32)
            def = *(const uint32_t *)field;
        else
            def = (long long)*(const size_t *)field;
        fprintf(f, "{'%s', integer, %lld, %lld, %lld}.\n", int_options[i].name,
                int_options[i].min, int_options[i].max, def);
    }
    /* unset: no password (the node sends no value) */
    fprintf(f, "{redis_password, string, undefined, undefined, undefined}.\n");
    fprintf(f, "{listen_ip, ip_address, undefined, undefined, <<\"%s\">>}.\n", d.listen_ip);
    fprintf(f, "{log_level, log_level, undefined, undefined, %s}.\n",
            d.log_level == LOG_WARNING ? "warn" : log_level_name(d.log_level));
}
