/* cluster_entered.h - the pure part of answering a retroactive subscription
 * across moves (docs/cluster.md, "Across moves"): where an entry entered
 * the cluster, and which configurations of the owner sets were in force
 * since a horizon.  No state, no I/O: unit-tested (test/c/test_cluster_entered.c).
 *
 * Every entry enters the cluster at exactly one core per topic (the move
 * invariant, "Moves"): the core that owns the topic when the entry reaches
 * it from a local client (under cur) or from a peer (under cur or alt).
 * Each core marks, per (entry, topic), whether the entry entered there
 * (entry.h, `entered'); what a core pushed over an upstream link did not.
 * The entries of a topic since a horizon are then the union, over the
 * cores that owned it in any configuration in force since the horizon, of
 * those that entered at each: no duplicates, no boundary arithmetic. */
#ifndef KRAKEN_CLUSTER_ENTERED_H
#define KRAKEN_CLUSTER_ENTERED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A moment: a unix second and a number of the router's publish sequence
 * taken for it (no entry has that number). */
struct cluster_point {
    int64_t time;
    uint64_t seq;
};

/* Whether an entry entered the cluster here for a topic: from a local client
 * (from_peer false) when this core owns the topic under cur; from a peer
 * when it owns it under cur or alt (a peer that did not switch yet still
 * sends to the previous owner).  Entries pushed by a core over an upstream
 * link never did (the caller does not ask). */
bool cluster_entered(bool from_peer, bool own_cur, bool own_alt);

/* at[0..n): the moments at which the remembered configurations were
 * applied, oldest first; `whole': at[0] is the first one this engine
 * applied (nothing before it was forgotten).  The index of the first
 * configuration in force at some moment after the horizon h (by_seq:
 * entries with seq > h; else with time > h, whose configuration is the last
 * applied at a second <= h, or a later one), or -1 when the history does
 * not reach back to h. */
long cluster_hist_first(const struct cluster_point *at, size_t n, bool whole, bool by_seq,
                        int64_t h);

/* The index of the configuration in force when the entry of publish
 * sequence number seq was published (the last applied before it), or -1
 * when it is older than at[0]. */
long cluster_hist_at(const struct cluster_point *at, size_t n, uint64_t seq);

#endif
