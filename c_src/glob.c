/* glob.c - Redis glob matching; see glob.h. */
#include "glob.h"

static bool match(const char *p, size_t pl, const char *s, size_t sl, bool *skip_longer,
                  int nesting)
{
    if (nesting > 1000)
        return false; /* abusive pattern */
    while (pl && sl) {
        switch (p[0]) {
        case '*':
            while (pl > 1 && p[1] == '*') {
                p++;
                pl--;
            }
            if (pl == 1)
                return true;
            while (sl) {
                if (match(p + 1, pl - 1, s, sl, skip_longer, nesting + 1))
                    return true;
                if (*skip_longer)
                    return false;
                s++;
                sl--;
            }
            /* Nothing after this star matches anywhere in the rest: an
             * earlier star taking more cannot help either. */
            *skip_longer = true;
            return false;
        case '?':
            s++;
            sl--;
            break;
        case '[': {
            p++;
            pl--;
            bool neg = pl && p[0] == '^';
            if (neg) {
                p++;
                pl--;
            }
            bool hit = false;
            for (;;) {
                if (pl >= 2 && p[0] == '\\') {
                    p++;
                    pl--;
                    if (p[0] == s[0])
                        hit = true;
                } else if (pl == 0) {
                    p--; /* unterminated set: the loop below steps past its end */
                    pl++;
                    break;
                } else if (p[0] == ']') {
                    break;
                } else if (pl >= 3 && p[1] == '-') {
                    int lo = (signed char)p[0], hi = (signed char)p[2], c = (signed char)s[0];
                    if (lo > hi) {
                        int t = lo;
                        lo = hi;
                        hi = t;
                    }
                    p += 2;
                    pl -= 2;
                    if (c >= lo && c <= hi)
                        hit = true;
                } else if (p[0] == s[0]) {
                    hit = true;
                }
                p++;
                pl--;
            }
            if (neg)
                hit = !hit;
            if (!hit)
                return false;
            s++;
            sl--;
            break;
        }
        case '\\':
            if (pl >= 2) {
                p++;
                pl--;
            }
            /* fall through */
        default:
            if (p[0] != s[0])
                return false;
            s++;
            sl--;
            break;
        }
        p++;
        pl--;
        if (sl == 0) {
            while (pl && *p == '*') {
                p++;
                pl--;
            }
            break;
        }
    }
    return pl == 0 && sl == 0;
}

bool glob_match(const char *pat, size_t plen, const char *str, size_t slen)
{
    bool skip_longer = false;
    return match(pat, plen, str, slen, &skip_longer, 0);
}
