/* budget.c - the global memory budget; see budget.h. */
#include "budget.h"

#include <stdlib.h>

#include "engine.h"

struct usage {
    size_t bytes;
    struct conn *c;
};

static int by_bytes_desc(const void *a, const void *b)
{
    size_t x = ((const struct usage *)a)->bytes, y = ((const struct usage *)b)->bytes;
    return x < y ? 1 : x > y ? -1 : 0;
}

struct budget_result budget_enforce(struct engine *eng, const struct budget_actions *act,
                                    void *arg)
{
    struct budget_result res = {0, 0, 0};
    size_t limit = eng->cfg.max_memory_bytes;
    if (limit == 0)
        return res;
    size_t clients = 0;
    for (const struct conn *c = eng->oldest; c; c = c->newer)
        if (!conn_is_closing(c))
            clients += conn_counted_bytes(c);
    size_t retained = (size_t)router_retained_bytes(&eng->router);
    res.total = clients + retained;
    if (res.total <= limit)
        return res;
    /* Down to three quarters, so that the budget is not crossed again by
     * the next few publishes (checks come every eighth of it). */
    size_t excess = res.total - (limit - limit / 4);
    res.trimmed = router_trim_retention(&eng->router, excess);
    if (res.trimmed)
        act->trimmed(res.total, res.trimmed, arg);
    if (res.trimmed >= excess)
        return res;
    excess -= res.trimmed;
    /* The largest first: one pass over a sorted snapshot (a rare event). */
    struct usage *u = malloc(eng->nconns * sizeof *u);
    size_t n = 0;
    if (!u) {
        /* No memory to sort: take the largest one at a time. */
        while (excess > 0) {
            struct conn *big = NULL;
            size_t most = 0;
            for (struct conn *c = eng->oldest; c; c = c->newer)
                if (!conn_is_closing(c) && conn_counted_bytes(c) > most) {
                    most = conn_counted_bytes(c);
                    big = c;
                }
            if (!big)
                break;
            act->disconnect(big, most, arg);
            res.disconnected++;
            excess = most >= excess ? 0 : excess - most;
        }
        return res;
    }
    for (struct conn *c = eng->oldest; c; c = c->newer)
        if (!conn_is_closing(c))
            u[n++] = (struct usage){conn_counted_bytes(c), c};
    qsort(u, n, sizeof *u, by_bytes_desc);
    for (size_t i = 0; i < n && excess > 0 && u[i].bytes > 0; i++) {
        act->disconnect(u[i].c, u[i].bytes, arg);
        res.disconnected++;
        excess = u[i].bytes >= excess ? 0 : excess - u[i].bytes;
    }
    free(u);
    return res;
}
