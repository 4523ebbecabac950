/* cluster_hash.c - rendezvous hashing of topics over cores; see cluster_hash.h. */
#include "cluster_hash.h"

#include <string.h>

uint64_t cluster_name_hash(const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t cluster_score(uint64_t topic_hash, uint64_t node_hash)
{
    uint64_t z = topic_hash ^ node_hash;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int name_cmp(const struct cluster_hash_node *a, const struct cluster_hash_node *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->name, b->name, n) : 0;
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

int cluster_owner(const struct cluster_hash_node *nodes, size_t n, uint64_t topic_hash)
{
    if (n == 1)
        return 0; /* (one node: no score to compare) */
    int best = -1;
    uint64_t best_score = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t s = cluster_score(topic_hash, nodes[i].hash);
        if (best < 0 || s > best_score ||
            (s == best_score && name_cmp(&nodes[i], &nodes[best]) < 0)) {
            best = (int)i;
            best_score = s;
        }
    }
    return best;
}
