/* protocol.c - Kraken wire protocol parsing and formatting (no I/O).
 *
 * See include/kraken/protocol.h.  The parser is incremental in the simplest
 * way: it is handed everything received so far and either frames the first
 * request, asks for more bytes (saying how many when the command line already
 * announced a data block, so the caller need not retry on every segment), or
 * returns the error line to send.  Every error closes the connection, so the
 * parser never has to resynchronise after one. */
#include "kraken/protocol.h"

#include <string.h>

#define MAX_TOKENS 8

static const char ERR_UNKNOWN[] = "ERROR\r\n";
static const char ERR_FORMAT[] = "CLIENT_ERROR bad command line format\r\n";
static const char ERR_CHUNK[] = "CLIENT_ERROR bad data chunk\r\n";
static const char ERR_HORIZON[] = "CLIENT_ERROR bad horizon\r\n";
static const char ERR_ENTRY[] = "CLIENT_ERROR bad publish entry\r\n";
static const char ERR_TOPIC[] = "CLIENT_ERROR bad topic: CR or LF in a topic name\r\n";

static bool slice_is(const char *p, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len == n && memcmp(p, word, n) == 0;
}

int proto_parse_u64(const char *p, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* flags and exptime are ignored but must be integers (exptime may be negative). */
static bool is_integer(const char *p, size_t len)
{
    uint64_t v;
    if (len > 0 && p[0] == '-') {
        p++;
        len--;
    }
    return proto_parse_u64(p, len, UINT64_MAX, &v) == 0;
}

static const char *find_nl(const char *p, size_t len)
{
    return memchr(p, '\n', len);
}

/* Topics hold no space, CR or LF (SPEC 1): a publish entry's topics end at
 * its line's end, so a topic with CR or LF could never be published to. */
static bool has_cr_lf(const char *p, size_t len)
{
    return memchr(p, '\r', len) != NULL || memchr(p, '\n', len) != NULL;
}

/* The topic list of a subscribe, unsubscribe or retro_subscribe block (the
 * latter's after its horizon line, which proto_parse_retro checks). */
static bool topics_have_cr_lf(enum proto_cmd cmd, const char *data, size_t len)
{
    if (cmd == PROTO_SET_RETRO_SUBSCRIBE || cmd == PROTO_SET_LINK_RETRO ||
        cmd == PROTO_SET_LINK_ENTERED) {
        const char *nl = find_nl(data, len);
        if (!nl)
            return false;
        len -= (size_t)(nl + 1 - data);
        data = nl + 1;
    } else if (cmd != PROTO_SET_SUBSCRIBE && cmd != PROTO_SET_UNSUBSCRIBE) {
        return false;
    }
    return has_cr_lf(data, len);
}

struct token {
    const char *p;
    size_t len;
};

/* Splits a command line on spaces; returns the token count, or MAX_TOKENS + 1 if more. */
static int tokenize(const char *p, size_t len, struct token *tok)
{
    int n = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && p[i] == ' ')
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && p[i] != ' ')
            i++;
        if (n == MAX_TOKENS)
            return MAX_TOKENS + 1;
        tok[n].p = p + start;
        tok[n].len = i - start;
        n++;
    }
    return n;
}

static int set_command(const struct token *key, enum proto_cmd *cmd)
{
    static const struct {
        const char *name;
        enum proto_cmd cmd;
    } keys[] = {
        {"register", PROTO_SET_REGISTER},   {"subscribe", PROTO_SET_SUBSCRIBE},
        {"retro_subscribe", PROTO_SET_RETRO_SUBSCRIBE},
        {"unsubscribe", PROTO_SET_UNSUBSCRIBE}, {"publish", PROTO_SET_PUBLISH},
        {"push", PROTO_SET_PUSH},           {"link_retro", PROTO_SET_LINK_RETRO},
        {"peer", PROTO_SET_PEER},           {"child", PROTO_SET_CHILD},
        {"link_entered", PROTO_SET_LINK_ENTERED},
        {"link_psubscribe", PROTO_SET_LINK_PSUBSCRIBE},
        {"link_punsubscribe", PROTO_SET_LINK_PUNSUBSCRIBE},
        {"link_ssubscribe", PROTO_SET_LINK_SSUBSCRIBE},
        {"link_sunsubscribe", PROTO_SET_LINK_SUNSUBSCRIBE},
        {"link_spublish", PROTO_SET_LINK_SPUBLISH},
        {"link_forward", PROTO_SET_LINK_FORWARD},
        {"link_sforward", PROTO_SET_LINK_SFORWARD},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (slice_is(key->p, key->len, keys[i].name)) {
            *cmd = keys[i].cmd;
            return 0;
        }
    }
    return -1;
}

static enum proto_status parse_set(const char *buf, size_t len, size_t line_end,
                                   const struct token *tok, int ntok, size_t max_request,
                                   struct proto_request *req, size_t *used, const char **error)
{
    uint64_t bytes;
    if (ntok >= 2 && set_command(&tok[1], &req->cmd) < 0) {
        *error = ERR_UNKNOWN;
        return PROTO_ERROR;
    }
    if (ntok < 5 || ntok > 6 || !is_integer(tok[2].p, tok[2].len) ||
        !is_integer(tok[3].p, tok[3].len) ||
        (ntok == 6 && !slice_is(tok[5].p, tok[5].len, "noreply"))) {
        *error = ERR_FORMAT;
        return PROTO_ERROR;
    }
    if (proto_parse_u64(tok[4].p, tok[4].len, UINT64_MAX, &bytes) < 0) {
        *error = ERR_CHUNK;
        return PROTO_ERROR;
    }
    size_t head = line_end + 1;
    if (head + 2 > max_request || bytes > max_request - head - 2) {
        *error = PROTO_ERR_TOO_LARGE;
        return PROTO_ERROR;
    }
    size_t total = head + (size_t)bytes + 2;
    if (len < total) {
        *used = total;
        return PROTO_NEED_MORE;
    }
    if (buf[head + bytes] != '\r' || buf[head + bytes + 1] != '\n') {
        *error = ERR_CHUNK;
        return PROTO_ERROR;
    }
    if (topics_have_cr_lf(req->cmd, buf + head, (size_t)bytes)) {
        *error = ERR_TOPIC;
        return PROTO_ERROR;
    }
    req->noreply = ntok == 6;
    req->data = buf + head;
    req->data_len = (size_t)bytes;
    *used = total;
    return PROTO_OK;
}

enum proto_status proto_parse_request(const char *buf, size_t len, size_t max_request,
                                      struct proto_request *req, size_t *used,
                                      const char **error)
{
    size_t max_line = max_request < PROTO_MAX_LINE ? max_request : PROTO_MAX_LINE;
    size_t scan = len < max_line + 1 ? len : max_line + 1;
    const char *nl = find_nl(buf, scan);
    *used = 0;
    if (!nl) {
        if (len > max_line) {
            *error = PROTO_ERR_TOO_LARGE;
            return PROTO_ERROR;
        }
        return PROTO_NEED_MORE;
    }
    size_t line_end = (size_t)(nl - buf);
    size_t line_len = line_end;
    if (line_len > 0 && buf[line_len - 1] == '\r')
        line_len--;

    struct token tok[MAX_TOKENS];
    int ntok = tokenize(buf, line_len, tok);
    memset(req, 0, sizeof *req);
    if (ntok >= 1 && ntok <= MAX_TOKENS) {
        if (slice_is(tok[0].p, tok[0].len, "set"))
            return parse_set(buf, len, line_end, tok, ntok, max_request, req, used, error);
        if (ntok == 2 && slice_is(tok[0].p, tok[0].len, "get") &&
            slice_is(tok[1].p, tok[1].len, "messages"))
            req->cmd = PROTO_GET_MESSAGES;
        else if (ntok == 1 && slice_is(tok[0].p, tok[0].len, "quit"))
            req->cmd = PROTO_QUIT;
        else if (ntok == 1 && slice_is(tok[0].p, tok[0].len, "version"))
            req->cmd = PROTO_VERSION;
        else if (ntok == 1 && slice_is(tok[0].p, tok[0].len, "stats"))
            req->cmd = PROTO_STATS;
        else
            goto unknown;
        *used = line_end + 1;
        return PROTO_OK;
    }
    if (ntok > MAX_TOKENS && slice_is(tok[0].p, tok[0].len, "set")) {
        *error = ERR_FORMAT;
        return PROTO_ERROR;
    }
unknown:
    *error = ERR_UNKNOWN;
    return PROTO_ERROR;
}

bool proto_next_topic(const char **cur, const char *end, struct proto_slice *topic)
{
    const char *p = *cur;
    while (p < end && *p == ' ')
        p++;
    if (p == end) {
        *cur = p;
        return false;
    }
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    const char *stop = sp ? sp : end;
    topic->p = p;
    topic->len = (size_t)(stop - p);
    *cur = stop;
    return true;
}

int proto_parse_retro(const char *data, size_t len, int64_t *horizon,
                      struct proto_slice *topics, const char **error)
{
    const char *nl = find_nl(data, len);
    size_t hlen = nl ? (size_t)(nl - data) : len;
    size_t rest = nl ? (size_t)(nl - data) + 1 : len;
    if (hlen > 0 && data[hlen - 1] == '\r')
        hlen--;
    uint64_t h;
    if (proto_parse_u64(data, hlen, INT64_MAX, &h) < 0) {
        *error = ERR_HORIZON;
        return -1;
    }
    *horizon = (int64_t)h;
    topics->p = data + rest;
    topics->len = len - rest;
    return 0;
}

int proto_next_link_entry(const char **cur, const char *end, struct proto_entry *entry,
                          bool *shard, const char **error)
{
    *shard = *cur < end && **cur == 'S';
    const char *p = *cur + *shard;
    int rc = proto_next_entry(&p, end, entry, error);
    if (rc == 0 && *shard) {
        *error = ERR_ENTRY; /* an `S' with no entry after it */
        return -1;
    }
    if (rc == 1)
        *cur = p;
    return rc;
}

int proto_next_entry(const char **cur, const char *end, struct proto_entry *entry,
                     const char **error)
{
    static const char prefix[] = "MESSAGE ";
    const char *p = *cur;
    if (p == end)
        return 0;
    *error = ERR_ENTRY;
    size_t avail = (size_t)(end - p);
    if (avail < sizeof prefix - 1 || memcmp(p, prefix, sizeof prefix - 1) != 0)
        return -1;
    const char *nl = find_nl(p, avail);
    if (!nl)
        return -1;
    const char *line_end = nl;
    if (line_end > p && line_end[-1] == '\r')
        line_end--;
    /* The last token is the payload size; everything before it is topics. */
    const char *q = line_end;
    while (q > p && q[-1] == ' ')
        q--;
    const char *num_end = q;
    while (q > p && q[-1] != ' ')
        q--;
    const char *topics = p + sizeof prefix - 1;
    if (q <= topics) /* no room for a topic before the size */
        return -1;
    uint64_t n;
    if (proto_parse_u64(q, (size_t)(num_end - q), UINT64_MAX, &n) < 0)
        return -1;
    if (memchr(topics, '\r', (size_t)(q - topics))) /* (an LF ends the line) */
        return -1;
    entry->topics.p = topics;
    entry->topics.len = (size_t)(q - topics);
    const char *t = entry->topics.p;
    struct proto_slice first;
    if (!proto_next_topic(&t, entry->topics.p + entry->topics.len, &first))
        return -1;
    const char *payload = nl + 1;
    if ((uint64_t)(end - payload) < n || (size_t)(end - payload) - n < 2 ||
        payload[n] != '\r' || payload[n + 1] != '\n')
        return -1;
    entry->payload.p = payload;
    entry->payload.len = (size_t)n;
    *cur = payload + n + 2;
    return 1;
}

size_t proto_digits(uint64_t n)
{
    size_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

size_t proto_fmt_u64(char *buf, uint64_t n)
{
    size_t d = proto_digits(n);
    for (size_t i = d; i > 0; i--) {
        buf[i - 1] = (char)('0' + n % 10);
        n /= 10;
    }
    return d;
}

size_t proto_fmt_value_line(char *buf, size_t block_len)
{
    static const char head[] = "VALUE messages 0 ";
    memcpy(buf, head, sizeof head - 1);
    size_t n = sizeof head - 1;
    n += proto_fmt_u64(buf + n, block_len);
    buf[n++] = '\r';
    buf[n++] = '\n';
    return n;
}
