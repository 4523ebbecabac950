/* cluster_entered.c - where entries entered the cluster, and which
 * configurations were in force since a horizon; see cluster_entered.h. */
#include "cluster_entered.h"

bool cluster_entered(bool from_peer, bool own_cur, bool own_alt)
{
    return own_cur || (from_peer && own_alt);
}

long cluster_hist_first(const struct cluster_point *at, size_t n, bool whole, bool by_seq,
                        int64_t h)
{
    if (n == 0)
        return -1;
    /* The last configuration applied before every entry after the horizon:
     * by seq, one whose number is <= h; by time, one applied at a second
     * <= h (entries published before it have a second <= h too). */
    for (size_t i = n; i-- > 0;)
        if (by_seq ? h >= 0 && at[i].seq <= (uint64_t)h : at[i].time <= h)
            return (long)i;
    return whole ? 0 : -1;
}

long cluster_hist_at(const struct cluster_point *at, size_t n, uint64_t seq)
{
    for (size_t i = n; i-- > 0;)
        if (at[i].seq < seq)
            return (long)i;
    return -1;
}
