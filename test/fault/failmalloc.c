/* failmalloc.c - LD_PRELOAD shim that makes big allocations fail.
 *
 * With KRAKEN_FAIL_MALLOC_ABOVE=N in the environment, malloc, calloc and
 * realloc of more than N bytes return NULL (errno ENOMEM); everything else
 * goes to the C library.  Used by test/fault_test.py to show that a failed
 * allocation for one client's request ends that request, not the engine nor
 * the other clients. */
#include <errno.h>
#include <stdlib.h>

static size_t limit(void)
{
    static size_t cached = (size_t)-1;
    static int init;
    if (!init) {
        const char *v = getenv("KRAKEN_FAIL_MALLOC_ABOVE");
        if (v)
            cached = strtoull(v, NULL, 10);
        init = 1;
    }
    return cached;
}

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

void *malloc(size_t n)
{
    if (n > limit()) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    if (m && n > limit() / m) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    if (n > limit()) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, n);
}
