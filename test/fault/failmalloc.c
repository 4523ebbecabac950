/* failmalloc.c - LD_PRELOAD shim that makes chosen allocations fail.
 *
 * With KRAKEN_FAIL_MALLOC_ABOVE=N in the environment, malloc, calloc and
 * realloc of more than N bytes return NULL (errno ENOMEM); with
 * KRAKEN_FAIL_MALLOC_SIZE=N, those of exactly N bytes; everything else goes
 * to the C library.  Used by test/fault_test.py to show that a failed
 * allocation for one client's request ends that request, not the engine nor
 * the other clients, and by test/control_test.py.
 *
 * With KRAKEN_FAIL_EVENT_NEW=N, the Nth call of libevent's event_new (which
 * evtimer_new and evsignal_new are) made by the program itself, not by
 * libevent, returns NULL: test/control_test.py checks that the engine's
 * start-up survives each of them. */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t env_size(const char *name, size_t dflt)
{
    const char *v = getenv(name);
    return v ? (size_t)strtoull(v, NULL, 10) : dflt;
}

static size_t limit(void)
{
    static size_t cached;
    static int init;
    if (!init) {
        cached = env_size("KRAKEN_FAIL_MALLOC_ABOVE", (size_t)-1);
        init = 1;
    }
    return cached;
}

static size_t exact(void)
{
    static size_t cached;
    static int init;
    if (!init) {
        cached = env_size("KRAKEN_FAIL_MALLOC_SIZE", 0);
        init = 1;
    }
    return cached;
}

static int fails(size_t n)
{
    return n > limit() || (n && n == exact());
}

struct event;
struct event_base;
typedef struct event *(*event_new_fn)(struct event_base *, int, short,
                                      void (*)(int, short, void *), void *);

struct event *event_new(struct event_base *base, int fd, short what,
                        void (*cb)(int, short, void *), void *arg)
{
    static event_new_fn real;
    static unsigned calls;
    if (!real)
        real = (event_new_fn)dlsym(RTLD_NEXT, "event_new");
    Dl_info info;
    int from_libevent = dladdr(__builtin_return_address(0), &info) && info.dli_fname &&
                        strstr(info.dli_fname, "libevent");
    if (!from_libevent && ++calls == env_size("KRAKEN_FAIL_EVENT_NEW", 0)) {
        errno = ENOMEM;
        return NULL;
    }
    return real(base, fd, what, cb, arg);
}

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

void *malloc(size_t n)
{
    if (fails(n)) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    if (m && (n > limit() / m || fails(n * m))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    if (fails(n)) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, n);
}
