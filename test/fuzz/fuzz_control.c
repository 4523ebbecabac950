/* fuzz_control.c - libFuzzer harness for control packets (control_decode.c).
 *
 * Each input is one packet as the engine reads it from the Erlang node (the
 * bytes after the 4-byte length).  The decoder must never read outside the
 * packet (AddressSanitizer: libFuzzer's buffer is exactly the input), must
 * agree with the term walker about where the term ends, and a decoded
 * configuration must hold only values in the options' ranges.  The corpus
 * (test/fuzz/corpus/control) starts from real packets of src/kraken_engine.erl.
 *
 * libei is not built with AddressSanitizer, so an overread inside an
 * ei_decode_* call would go unseen: the packet is therefore copied to the end
 * of a page followed by an inaccessible one, and any read past it faults. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "control_decode.h"

#define AREA (1u << 20) /* the largest input tried; -max_len is 4096 in make fuzz-smoke */

/* A copy of data[0..size) ending where an inaccessible page begins. */
static const char *guarded(const uint8_t *data, size_t size)
{
    static char *area;
    if (!area) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        area = mmap(NULL, AREA + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert(area != MAP_FAILED);
        assert(mprotect(area + AREA, page, PROT_NONE) == 0);
    }
    char *p = area + AREA - size;
    if (size)
        memcpy(p, data, size);
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > AREA)
        return 0;
    const char *buf = guarded(data, size);
    struct ctl_command cmd;
    char err[256];
    err[0] = 0;
    enum ctl_status st = ctl_decode(buf, size, &cmd, err, sizeof err);
    long end = size > 0 ? ctl_term_end(buf, size, 1) : -1;
    assert(end <= (long)size);
    if (st != CTL_OK) {
        assert(memchr(err, 0, sizeof err) && err[0] != 0); /* a reason, NUL-terminated */
    } else {
        assert(end == (long)size); /* accepted only when the term fills the packet */
        if (cmd.kind == CTL_CONFIG) {
            const struct engine_config *c = &cmd.config;
            assert(memchr(c->listen_ip, 0, sizeof c->listen_ip));
            assert(c->port >= 0 && c->port <= 65535);
            assert(c->max_clients >= 1 && c->num_shards >= 1 && c->num_shards <= 65536);
            assert(c->retain_per_shard >= 1 && c->idle_timeout_secs >= 1);
            assert(c->max_request_bytes >= 1024 && c->max_queue_bytes >= 1024);
            assert(c->log_level >= LOG_DEBUG && c->log_level <= LOG_ERROR);
        } else {
            assert(cmd.kind == CTL_CALL);
            assert(cmd.request >= CTL_STATS && cmd.request <= CTL_BADARG);
        }
    }
    /* The walker on every suffix of the input (any offset may start a term). */
    for (size_t off = 0; off < size && off < 64; off++) {
        long e = ctl_term_end(buf, size, off);
        assert(e == -1 || (e > (long)off && e <= (long)size));
    }
    /* Deterministic: the same bytes decode the same way. */
    struct ctl_command again;
    char err2[256];
    assert(ctl_decode(buf, size, &again, err2, sizeof err2) == st);
    return 0;
}
