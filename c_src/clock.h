/* clock.h - the engine's clocks: monotonic milliseconds and Unix seconds.
 *
 * clock_mono_ms() and clock_unix() read the system clock each time.  The
 * hot paths (a publish's timestamps, a request's time, a delivery's wait)
 * use the turn clock instead: read once per turn of the event loop, on first
 * use after loop.c began the turn (as Redis caches its clock per loop), and
 * the same for every request of that turn.  A turn lasts at most a few
 * milliseconds of work, so a turn time is late by at most that.  Outside
 * loop_run() (unit tests, start-up) the turn clock reads the clock each
 * time. */
#ifndef KRAKEN_CLOCK_H
#define KRAKEN_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

int64_t clock_mono_ms(void);
int64_t clock_unix(void);

struct clock_turn {
    bool on;           /* loop_run() is running */
    bool have_ms, have_unix;
    int64_t ms, unix_s;
};
extern struct clock_turn clock_turn;

/* A new turn: the next clock_turn_*() reads the clock. (loop.c) */
static inline void clock_turn_begin(void)
{
    clock_turn.on = true;
    clock_turn.have_ms = clock_turn.have_unix = false;
}

static inline int64_t clock_turn_ms(void)
{
    if (!clock_turn.have_ms) {
        clock_turn.ms = clock_mono_ms();
        clock_turn.have_ms = clock_turn.on;
    }
    return clock_turn.ms;
}

static inline int64_t clock_turn_unix(void)
{
    if (!clock_turn.have_unix) {
        clock_turn.unix_s = clock_unix();
        clock_turn.have_unix = clock_turn.on;
    }
    return clock_turn.unix_s;
}

#endif
