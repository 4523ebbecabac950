/* cluster_hash.h - which core owns a topic: rendezvous (highest random
 * weight) hashing over the live cores, pure and deterministic.
 *
 * Every node of a cluster (core or proxy) computes the owner of a topic from
 * the same inputs, the topic's bytes and the set of live cores' node names
 * (e.g. "c1@web1"), so they all agree without talking to each other:
 *
 *   name_hash(x)   = FNV-1a 64 of the bytes of x
 *   score(t, n)    = mix64(name_hash(t) ^ name_hash(n))    (mix64: splitmix64's finaliser)
 *   owner(t, S)    = the n in S with the highest score(t, n); ties (never seen
 *                    in practice) go to the byte-wise smaller name
 *
 * The order in which the cores are listed does not matter.  Removing a core
 * moves only the topics it owned (each to the core with its second-highest
 * score); adding one moves to it only the topics it now wins, each from the
 * core that owned it.  The cost is one hash of the topic and one mix per
 * core: with the few cores of a cluster this is cheaper than a ring lookup. */
#ifndef KRAKEN_CLUSTER_HASH_H
#define KRAKEN_CLUSTER_HASH_H

#include <stddef.h>
#include <stdint.h>

struct cluster_hash_node {
    const char *name;  /* node name bytes (not necessarily NUL-terminated) */
    size_t len;
    uint64_t hash;     /* cluster_name_hash(name, len), precomputed */
};

uint64_t cluster_name_hash(const char *p, size_t len);
uint64_t cluster_score(uint64_t topic_hash, uint64_t node_hash);
/* Index in nodes[0..n) of the owner of a topic whose cluster_name_hash is
 * topic_hash; -1 when n is 0. */
int cluster_owner(const struct cluster_hash_node *nodes, size_t n, uint64_t topic_hash);

#endif
