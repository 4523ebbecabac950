/* control_decode.c - bounded decoding of control packets; see control_decode.h. */
#include "control_decode.h"

#include <ei.h>
#include <stdio.h>
#include <string.h>

#define VERSION_MAGIC 131 /* the first byte of term_to_binary/1 output */

/* ---- the bounded walker ---- */

static uint32_t be16(const unsigned char *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Size of the atom at b[pos] (tag included), or 0 if it is none or runs past len:
 * the node of a pid, port or reference. */
static uint64_t atom_size(const unsigned char *b, size_t len, size_t pos)
{
    if (pos >= len)
        return 0;
    size_t left = len - pos - 1;
    switch (b[pos]) {
    case ERL_ATOM_EXT:
    case ERL_ATOM_UTF8_EXT:
        return left >= 2 && be16(b + pos + 1) <= left - 2 ? 3 + (uint64_t)be16(b + pos + 1) : 0;
    case ERL_SMALL_ATOM_EXT:
    case ERL_SMALL_ATOM_UTF8_EXT:
        return left >= 1 && b[pos + 1] <= left - 1 ? 2 + (uint64_t)b[pos + 1] : 0;
    default:
        return 0;
    }
}

long ctl_term_end(const char *buf, size_t len, size_t off)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t pos = off;
    uint64_t pending = 1; /* terms still to walk; each takes at least one byte */
    if (off > len || len > (size_t)INT32_MAX)
        return -1;
    while (pending > 0) {
        if (pending > len - pos)
            return -1;
        pending--;
        unsigned tag = b[pos++];
        size_t left = len - pos;
        uint64_t head = 0; /* length-field bytes after the tag, read below */
        uint64_t need;     /* bytes after the tag that belong to this term itself */
        uint64_t nested = 0;
        switch (tag) {
        case ERL_NIL_EXT:
            need = 0;
            break;
        case ERL_SMALL_INTEGER_EXT:
            need = 1;
            break;
        case ERL_INTEGER_EXT:
            need = 4;
            break;
        case NEW_FLOAT_EXT:
            need = 8;
            break;
        case ERL_FLOAT_EXT:
            need = 31;
            break;
        case ERL_ATOM_EXT:
        case ERL_ATOM_UTF8_EXT:
        case ERL_STRING_EXT:
            head = 2;
            if (left < head)
                return -1;
            need = head + be16(b + pos);
            break;
        case ERL_SMALL_ATOM_EXT:
        case ERL_SMALL_ATOM_UTF8_EXT:
            head = 1;
            if (left < head)
                return -1;
            need = head + b[pos];
            break;
        case ERL_BINARY_EXT:
            head = 4;
            if (left < head)
                return -1;
            need = head + (uint64_t)be32(b + pos);
            break;
        case ERL_BIT_BINARY_EXT: /* Len, Bits, Data */
            head = 5;
            if (left < head)
                return -1;
            need = head + (uint64_t)be32(b + pos);
            break;
        case ERL_SMALL_BIG_EXT: /* n, Sign, n bytes */
            head = 2;
            if (left < head)
                return -1;
            need = head + b[pos];
            break;
        case ERL_LARGE_BIG_EXT:
            head = 5;
            if (left < head)
                return -1;
            need = head + (uint64_t)be32(b + pos);
            break;
        case ERL_NEW_FUN_EXT: /* Size counts every byte after the tag */
            if (left < 4 || be32(b + pos) < 4)
                return -1;
            need = be32(b + pos);
            break;
        case ERL_SMALL_TUPLE_EXT:
            if (left < 1)
                return -1;
            need = 1;
            nested = b[pos];
            break;
        case ERL_LARGE_TUPLE_EXT:
            if (left < 4)
                return -1;
            need = 4;
            nested = be32(b + pos);
            break;
        case ERL_LIST_EXT: /* elements, then the tail */
            if (left < 4)
                return -1;
            need = 4;
            nested = (uint64_t)be32(b + pos) + 1;
            break;
        case ERL_MAP_EXT:
            if (left < 4)
                return -1;
            need = 4;
            nested = 2 * (uint64_t)be32(b + pos);
            break;
        case ERL_EXPORT_EXT: /* Module, Function, Arity: three terms */
            need = 0;
            nested = 3;
            break;
        /* Node (an atom), then fixed fields. */
        case ERL_PID_EXT:
        case ERL_NEW_PID_EXT:
        case ERL_PORT_EXT:
        case ERL_NEW_PORT_EXT:
        case ERL_V4_PORT_EXT:
        case ERL_REFERENCE_EXT: {
            uint64_t node = atom_size(b, len, pos);
            if (!node)
                return -1;
            need = node + (tag == ERL_PID_EXT       ? 9
                           : tag == ERL_NEW_PID_EXT ? 12
                           : tag == ERL_PORT_EXT    ? 5
                           : tag == ERL_NEW_PORT_EXT ? 8
                           : tag == ERL_V4_PORT_EXT ? 12
                                                    : 5);
            break;
        }
        case ERL_NEW_REFERENCE_EXT:   /* Len, Node, Creation (1), Len x 4 bytes */
        case ERL_NEWER_REFERENCE_EXT: /* Len, Node, Creation (4), Len x 4 bytes */
        {
            if (left < 2)
                return -1;
            uint64_t node = atom_size(b, len, pos + 2);
            if (!node)
                return -1;
            need = 2 + node + (tag == ERL_NEW_REFERENCE_EXT ? 1 : 4) + 4 * (uint64_t)be16(b + pos);
            break;
        }
        default: /* old funs, atom cache references, compressed terms... */
            return -1;
        }
        if (need > left)
            return -1;
        pos += (size_t)need;
        pending += nested;
    }
    return (long)pos;
}

/* ---- the checked layer over ei ----
 *
 * ei_decode_* trust the lengths they read and know nothing of the packet's
 * end, so each call below first makes sure that one whole well-formed term
 * starts at *idx inside the packet.  Walking a term again for each decode
 * costs little: packets are small, and each byte is walked a few times. */

struct packet {
    const char *buf;
    size_t len;
};

static int term_at(const struct packet *pk, const int *idx)
{
    return *idx >= 0 && ctl_term_end(pk->buf, pk->len, (size_t)*idx) >= 0;
}

static int get_type(const struct packet *pk, int *idx, int *type, int *size)
{
    return term_at(pk, idx) ? ei_get_type(pk->buf, idx, type, size) : -1;
}

static int decode_atom(const struct packet *pk, int *idx, char *out) /* MAXATOMLEN_UTF8 */
{
    return term_at(pk, idx) ? ei_decode_atom(pk->buf, idx, out) : -1;
}

static int decode_tuple_header(const struct packet *pk, int *idx, int *arity)
{
    return term_at(pk, idx) ? ei_decode_tuple_header(pk->buf, idx, arity) : -1;
}

static int decode_list_header(const struct packet *pk, int *idx, int *n)
{
    return term_at(pk, idx) ? ei_decode_list_header(pk->buf, idx, n) : -1;
}

static int decode_longlong(const struct packet *pk, int *idx, long long *v)
{
    return term_at(pk, idx) ? ei_decode_longlong(pk->buf, idx, v) : -1;
}

/* Decodes a binary, a string or an atom into out (NUL-terminated). */
static int decode_text(const struct packet *pk, int *idx, char *out, size_t outlen)
{
    int type, size;
    if (get_type(pk, idx, &type, &size) < 0 || size < 0 || (size_t)size >= outlen)
        return -1;
    if (type == ERL_BINARY_EXT) {
        long len;
        if (ei_decode_binary(pk->buf, idx, out, &len) < 0)
            return -1;
        out[len] = 0;
        return 0;
    }
    if (type == ERL_STRING_EXT)
        return ei_decode_string(pk->buf, idx, out);
    if ((type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_EXT || type == ERL_ATOM_UTF8_EXT ||
         type == ERL_SMALL_ATOM_UTF8_EXT) && outlen >= MAXATOMLEN_UTF8)
        return ei_decode_atom(pk->buf, idx, out);
    return -1;
}

/* ---- packets ---- */

/* Decodes one option value (an integer or text) at *idx and applies it;
 * *idx is left after the value whatever it was. */
static enum ctl_status apply_option(const struct packet *pk, int *idx, struct engine_config *c,
                                    const char *name, char *err, size_t errlen)
{
    char text[MAXATOMLEN_UTF8];
    struct config_value v = {0, 0, text};
    int type, size;
    long end = *idx >= 0 ? ctl_term_end(pk->buf, pk->len, (size_t)*idx) : -1;
    if (end < 0) {
        snprintf(err, errlen, "malformed configuration term");
        return CTL_BAD_CONFIG;
    }
    int ok = get_type(pk, idx, &type, &size) == 0;
    if (ok && (type == ERL_SMALL_INTEGER_EXT || type == ERL_INTEGER_EXT ||
               type == ERL_SMALL_BIG_EXT || type == ERL_LARGE_BIG_EXT)) {
        v.is_int = 1;
        ok = decode_longlong(pk, idx, &v.i) == 0;
    } else if (ok) {
        ok = decode_text(pk, idx, text, sizeof text) == 0;
    }
    ok = ok && *idx == end;
    *idx = (int)end;
    if (!ok) { /* neither: fine only for an option the engine does not use */
        v.is_int = 0;
        v.text = "";
    }
    switch (config_set(c, name, &v, err, errlen)) {
    case CONFIG_OK:
        if (ok)
            return CTL_OK;
        break;
    case CONFIG_UNKNOWN:
        return CTL_OK; /* options the engine does not use */
    case CONFIG_BAD:
        if (ok)
            return CTL_BAD_CONFIG;
        break;
    }
    snprintf(err, errlen, "bad value for option %.64s", name);
    return CTL_BAD_CONFIG;
}

/* [{Name :: atom(), Value}] */
static enum ctl_status decode_config(const struct packet *pk, int *idx, struct engine_config *c,
                                     char *err, size_t errlen)
{
    int n;
    engine_config_defaults(c);
    if (decode_list_header(pk, idx, &n) < 0)
        goto bad;
    for (int i = 0; i < n; i++) {
        int arity;
        char name[MAXATOMLEN_UTF8];
        if (decode_tuple_header(pk, idx, &arity) < 0 || arity != 2 ||
            decode_atom(pk, idx, name) < 0)
            goto bad;
        enum ctl_status st = apply_option(pk, idx, c, name, err, errlen);
        if (st != CTL_OK)
            return st;
    }
    if (n > 0 && (decode_list_header(pk, idx, &n) < 0 || n != 0))
        goto bad; /* an improper list */
    return CTL_OK;
bad:
    snprintf(err, errlen, "malformed configuration term");
    return CTL_BAD_CONFIG;
}

/* Ref, Request of {call, Ref, Request}: Ref must be an integer (else there
 * is nobody to answer); any Request but the known ones is CTL_BADARG. */
static enum ctl_status decode_call(const struct packet *pk, int *idx, struct ctl_command *cmd,
                                   char *err, size_t errlen)
{
    int type, size, arity;
    char atom[MAXATOMLEN_UTF8];
    if (decode_longlong(pk, idx, &cmd->ref) < 0) {
        snprintf(err, errlen, "call without an integer reference");
        return CTL_MALFORMED;
    }
    cmd->request = CTL_BADARG;
    cmd->request_offset = *idx;
    if (get_type(pk, idx, &type, &size) < 0)
        return CTL_OK;
    if (type == ERL_SMALL_TUPLE_EXT) {
        if (decode_tuple_header(pk, idx, &arity) < 0 || arity != 2 || decode_atom(pk, idx, atom) < 0)
            return CTL_OK;
        long long id;
        char lv[MAXATOMLEN_UTF8];
        if (strcmp(atom, "dump_queue_topics") == 0 && decode_longlong(pk, idx, &id) == 0) {
            cmd->request = CTL_DUMP_QUEUE_TOPICS;
            cmd->queue_id = (uint64_t)id;
        } else if (strcmp(atom, "set_log_level") == 0 && decode_text(pk, idx, lv, sizeof lv) == 0 &&
                   log_level_parse(lv, &cmd->level) == 0) {
            cmd->request = CTL_SET_LOG_LEVEL;
        }
    } else if (decode_atom(pk, idx, atom) == 0) {
        if (strcmp(atom, "stats") == 0)
            cmd->request = CTL_STATS;
        else if (strcmp(atom, "dump_queues") == 0)
            cmd->request = CTL_DUMP_QUEUES;
        else if (strcmp(atom, "dump_topics") == 0)
            cmd->request = CTL_DUMP_TOPICS;
        else if (strcmp(atom, "ready") == 0)
            cmd->request = CTL_READY;
    }
    return CTL_OK;
}

enum ctl_status ctl_decode(const char *buf, size_t len, struct ctl_command *cmd, char *err,
                           size_t errlen)
{
    const struct packet pk = {buf, len};
    int idx = 1, arity;
    char tag[MAXATOMLEN_UTF8];
    memset(cmd, 0, sizeof *cmd);
    if (len == 0 || (unsigned char)buf[0] != VERSION_MAGIC) {
        snprintf(err, errlen, "not an external term (no version byte)");
        return CTL_MALFORMED;
    }
    long end = ctl_term_end(buf, len, 1);
    if (end < 0) {
        snprintf(err, errlen, "malformed term: a length runs past the packet, or an unknown tag");
        return CTL_MALFORMED;
    }
    if ((size_t)end != len) {
        snprintf(err, errlen, "%zu bytes after the term", len - (size_t)end);
        return CTL_MALFORMED;
    }
    if (decode_tuple_header(&pk, &idx, &arity) < 0 || arity < 1 || decode_atom(&pk, &idx, tag) < 0) {
        snprintf(err, errlen, "not a tuple tagged with an atom");
        return CTL_MALFORMED;
    }
    if (strcmp(tag, "config") == 0 && arity == 2) {
        cmd->kind = CTL_CONFIG;
        return decode_config(&pk, &idx, &cmd->config, err, errlen);
    }
    if (strcmp(tag, "call") == 0 && arity == 3) {
        cmd->kind = CTL_CALL;
        return decode_call(&pk, &idx, cmd, err, errlen);
    }
    snprintf(err, errlen, "unexpected packet %.64s/%d", tag, arity);
    return CTL_MALFORMED;
}
