/* glob.c - Redis glob matching; see glob.h. */
#include "glob.h"

struct glob {
    bool give_up; /* a '*' found no match anywhere: longer tries of earlier '*' are futile */
};

static bool glob(struct glob *g, const char *pat, size_t plen, const char *str, size_t slen,
                 int depth)
{
    if (depth > 1000)
        return false;
    while (plen && slen) {
        switch (pat[0]) {
        case '*':
            while (plen >= 2 && pat[1] == '*') {
                pat++;
                plen--;
            }
            if (plen == 1)
                return true;
            for (; slen; str++, slen--) {
                if (glob(g, pat + 1, plen - 1, str, slen, depth + 1))
                    return true;
                if (g->give_up)
                    return false;
            }
            g->give_up = true;
            return false;
        case '?':
            str++;
            slen--;
            break;
        case '[': {
            pat++;
            plen--;
            bool negate = plen > 0 && pat[0] == '^';
            if (negate) {
                pat++;
                plen--;
            }
            bool match = false;
            for (;;) {
                if (plen == 0) {
                    /* unterminated: stand on the last byte, consumed below */
                    pat--;
                    plen++;
                    break;
                }
                if (pat[0] == '\\' && plen >= 2) {
                    pat++;
                    plen--;
                    if (pat[0] == str[0])
                        match = true;
                } else if (pat[0] == ']') {
                    break;
                } else if (plen >= 3 && pat[1] == '-') {
                    /* Redis compares plain (signed) chars */
                    int lo = (signed char)pat[0], hi = (signed char)pat[2];
                    int c = (signed char)str[0];
                    if (lo > hi) {
                        int t = lo;
                        lo = hi;
                        hi = t;
                    }
                    pat += 2;
                    plen -= 2;
                    if (c >= lo && c <= hi)
                        match = true;
                } else if (pat[0] == str[0]) {
                    match = true;
                }
                pat++;
                plen--;
            }
            if (negate)
                match = !match;
            if (!match)
                return false;
            str++;
            slen--;
            break;
        }
        case '\\':
            if (plen >= 2) {
                pat++;
                plen--;
            }
            /* fall through */
        default:
            if (pat[0] != str[0])
                return false;
            str++;
            slen--;
            break;
        }
        pat++;
        plen--;
        if (slen == 0) {
            while (plen && pat[0] == '*') {
                pat++;
                plen--;
            }
            break;
        }
    }
    return plen == 0 && slen == 0;
}

bool glob_match(const char *pat, size_t plen, const char *str, size_t slen)
{
    struct glob g = {false};
    return glob(&g, pat, plen, str, slen, 0);
}
