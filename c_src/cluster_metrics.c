/* cluster_metrics.c - the cluster's part of the /metrics page
 * (docs/operations.md, "Metrics"): one series per upstream of this node (a
 * core of the cluster, a parent, or a static upstream), labelled with its
 * name and kind, so that an operator can alert on a link that is down or on
 * publishes that could not be forwarded without reading the logs:
 *
 *   kraken_cluster_link_up{node,kind}                 1 up (pushing or polled), 0 not
 *   kraken_cluster_link_connects_total{node,kind}     links made to it
 *   kraken_cluster_forwarded_entries_total{node,kind} entries forwarded to it
 *   kraken_cluster_dropped_entries_total{node,kind}   entries not forwarded: its
 *                                                     link was not up (publishes
 *                                                     refused, a peer's entries)
 *
 * The counters belong to the upstream as this node knows it: they start
 * from 0 when it joins the live set again (Prometheus takes that as a
 * reset).  The clients disconnected because of the cluster are
 * kraken_disconnects_total{cause="cluster"} (stats.c).  Nothing here walks
 * the topics: a scrape costs one line per upstream. */
#include <event2/buffer.h>
#include <inttypes.h>

#include "cluster_internal.h"
#include "conn.h"
#include "metrics.h"

/* A label value, escaped as the exposition format asks. */
static void label(struct evbuffer *out, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        if (ch == '\\' || ch == '"')
            evbuffer_add_printf(out, "\\%c", ch);
        else if (ch == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, &ch, 1);
    }
}

static const char *kind(const struct cluster_core *k)
{
    return k->parent ? "parent" : k->poll_ms > 0 ? "upstream" : "core";
}

static bool link_up(const struct cluster_core *k)
{
    return k->link && link_state(k->link)->up && !conn_is_closing(k->link);
}

enum figure { LINK_UP, CONNECTS, FORWARDED, DROPPED, FIGURES };

static uint64_t figure(const struct cluster_core *k, enum figure f)
{
    switch (f) {
    case LINK_UP:
        return link_up(k);
    case CONNECTS:
        return k->links;
    case FORWARDED:
        return k->sent;
    default:
        return k->dropped;
    }
}

void cluster_metrics(struct evbuffer *out)
{
    static const struct {
        const char *name, *suffix, *type, *help;
    } families[FIGURES] = {
        [LINK_UP] = {"cluster_link_up", "", "gauge",
                     "Whether this node's link to an upstream (core, parent, static upstream) "
                     "is up: 1 up, 0 down or connecting"},
        [CONNECTS] = {"cluster_link_connects", "_total", "counter",
                      "Links made to an upstream since it joined this node's live set"},
        [FORWARDED] = {"cluster_forwarded_entries", "_total", "counter",
                       "Entries forwarded to an upstream (their topics are its)"},
        [DROPPED] = {"cluster_dropped_entries", "_total", "counter",
                     "Entries not forwarded to an upstream because its link was not up "
                     "(clients' publishes refused, other nodes' entries dropped)"},
    };
    for (int f = 0; f < FIGURES; f++) {
        bool any = false;
        for (size_t i = 0; i < cl.n; i++) {
            const struct cluster_core *k = cl.cores[i];
            if (k->self)
                continue;
            if (!any)
                metrics_header(out, families[f].name, families[f].suffix, families[f].type,
                               families[f].help);
            any = true;
            evbuffer_add_printf(out, "kraken_%s%s{node=\"", families[f].name, families[f].suffix);
            label(out, k->name, k->len);
            evbuffer_add_printf(out, "\",kind=\"%s\"} %" PRIu64 "\n", kind(k),
                                figure(k, (enum figure)f));
        }
    }
}
