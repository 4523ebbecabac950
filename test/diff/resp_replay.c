/* resp_replay.c - resp_parse() over stdin, for test/resp_diff.py.
 *
 * Reads records <u8 authenticated><u32 length><stream> (little-endian) until
 * EOF.  Each stream is parsed in one buffer, command after command, as a
 * connection that received it all at once; for each stream it writes
 *   'C' <u32 argc> (<u32 len> <bytes>)...   per command with arguments,
 *   'E' <u32 len> <error reply>             on a protocol error, or
 *   'M'                                     when it ends (complete or not).
 * Commands of no arguments (empty lines, *0) are skipped, as Redis does. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

static void put_u32(size_t v)
{
    unsigned char h[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    fwrite(h, 1, 4, stdout);
}

int main(void)
{
    struct resp_parser p;
    resp_parser_init(&p, 0);
    unsigned char h[5];
    while (fread(h, 1, 5, stdin) == 5) {
        bool authed = h[0] != 0;
        size_t len = (size_t)h[1] | (size_t)h[2] << 8 | (size_t)h[3] << 16 | (size_t)h[4] << 24;
        char *buf = malloc(len ? len : 1);
        if (!buf || fread(buf, 1, len, stdin) != len) {
            fprintf(stderr, "resp_replay: short record\n");
            return 2;
        }
        size_t off = 0;
        resp_parser_reset(&p);
        for (;;) {
            size_t used;
            const char *err;
            enum resp_status st = resp_parse(&p, buf + off, len - off, authed, &used, &err);
            if (st == RESP_OK) {
                off += used;
                if (p.argc == 0)
                    continue;
                putchar('C');
                put_u32(p.argc);
                for (size_t i = 0; i < p.argc; i++) {
                    put_u32(p.argv[i].len);
                    fwrite(p.argv[i].p, 1, p.argv[i].len, stdout);
                }
                continue;
            }
            if (st == RESP_ERROR) {
                putchar('E');
                put_u32(strlen(err));
                fputs(err, stdout);
            } else if (st == RESP_NEED_MORE) {
                putchar('M');
            } else {
                fprintf(stderr, "resp_replay: out of memory\n");
                return 2;
            }
            break;
        }
        free(buf);
    }
    resp_parser_free(&p);
    return fflush(stdout) == 0 ? 0 : 1;
}
