/* glob_match.c - glob_match() over stdin, for test/glob_diff.py.
 *
 * Reads records <u32 pattern length><pattern><u32 string length><string>
 * (lengths little-endian) until EOF and writes one byte per record: '1' when
 * the pattern matches the string, else '0'. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "glob.h"

static char *read_field(size_t *len)
{
    unsigned char h[4];
    if (fread(h, 1, 4, stdin) != 4)
        return NULL;
    *len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
    char *p = malloc(*len ? *len : 1);
    if (!p || fread(p, 1, *len, stdin) != *len) {
        fprintf(stderr, "glob_match: short record\n");
        exit(2);
    }
    return p;
}

int main(void)
{
    size_t plen, slen;
    char *pat;
    while ((pat = read_field(&plen)) != NULL) {
        char *str = read_field(&slen);
        if (!str) {
            fprintf(stderr, "glob_match: record without a string\n");
            return 2;
        }
        putchar(glob_match(pat, plen, str, slen) ? '1' : '0');
        free(pat);
        free(str);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
