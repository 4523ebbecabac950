/* fuzz_protocol.c - libFuzzer harness for the wire protocol parser.
 *
 * Frames every request of the input as the engine would (with a small size
 * limit so the "too large" paths are reached), and walks each data block with
 * the topic, retro_subscribe and publish-entry parsers (and the cluster
 * link's, which also takes `SMESSAGE' entries), checking that every slice
 * they return lies inside the buffer. */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kraken/protocol.h"

static void check_slice(const char *buf, size_t len, struct proto_slice s)
{
    assert(s.p >= buf && s.p + s.len <= buf + len);
}

static void walk_block(const char *data, size_t len)
{
    const char *cur = data, *end = data + len, *err;
    struct proto_slice t;
    while (proto_next_topic(&cur, end, &t)) {
        check_slice(data, len, t);
        assert(t.len > 0 && memchr(t.p, ' ', t.len) == NULL);
    }
    int64_t h;
    if (proto_parse_retro(data, len, &h, &t, &err) == 0) {
        check_slice(data, len, t);
        assert(h >= 0);
    }
    struct proto_entry e;
    cur = data;
    int rc;
    while ((rc = proto_next_entry(&cur, end, &e, &err)) == 1) {
        check_slice(data, len, e.topics);
        check_slice(data, len, e.payload);
        assert(cur <= end);
    }
    assert(rc == 0 || strncmp(err, "CLIENT_ERROR ", 13) == 0);
    /* The same block as a cluster link's pushed block, whose entries may
     * be `SMESSAGE' lines too (proto_link.c): every entry proto_next_entry
     * takes is taken the same, an `S' only before a whole entry. */
    const char *lcur = data;
    cur = data;
    bool shard;
    struct proto_entry le;
    for (;;) {
        const char *before = lcur;
        rc = proto_next_link_entry(&lcur, end, &le, &shard, &err);
        if (rc != 1)
            break;
        check_slice(data, len, le.topics);
        check_slice(data, len, le.payload);
        assert(lcur > before && lcur <= end);
        assert(!shard || *before == 'S');
        if (!shard) { /* in step with proto_next_entry */
            assert(proto_next_entry(&cur, end, &e, &err) == 1);
            assert(e.topics.p == le.topics.p && e.payload.p == le.payload.p);
        } else {
            cur = lcur;
        }
    }
    assert(rc == 0 || strncmp(err, "CLIENT_ERROR ", 13) == 0);
    assert(rc != 0 || lcur == end);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    /* Copy so that reads past the end are caught by ASan. */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, in, size);
    size_t off = 0;
    while (off < size) {
        struct proto_request req;
        size_t used;
        const char *err;
        enum proto_status st = proto_parse_request(buf + off, size - off, 4096, &req, &used, &err);
        if (st != PROTO_OK) {
            if (st == PROTO_ERROR)
                assert(err[strlen(err) - 1] == '\n');
            else
                assert(used == 0 || used > size - off);
            break;
        }
        assert(used > 0 && used <= size - off);
        if (req.data) {
            assert(req.data >= buf + off && req.data + req.data_len + 2 <= buf + off + used);
            walk_block(req.data, req.data_len);
        }
        off += used;
    }
    free(buf);
    return 0;
}
