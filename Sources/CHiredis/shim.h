#ifndef TANDEM_CHIREDIS_SHIM_H
#define TANDEM_CHIREDIS_SHIM_H
// Debian 12 ships hiredis 0.14.1 (headers in /usr/include/hiredis, found through pkg-config).
#include <hiredis.h>
#include <fcntl.h>
#include <string.h>

// Switches a context made by a blocking connect to non-blocking I/O: hiredis has no API to clear
// REDIS_BLOCK, and while it is set redisBufferRead/Write treat EAGAIN as a fatal I/O error.
// Also sets FD_CLOEXEC, which hiredis 0.14 does not, so spawned processes don't inherit the socket
// (a child holding a copy would keep the connection open after we close it).
// (fcntl is variadic, which Swift cannot call directly either.)
static inline int tandem_redis_set_nonblocking(redisContext *c) {
    int flags = fcntl(c->fd, F_GETFL);
    if (flags == -1 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        return REDIS_ERR;
    }
    int fdflags = fcntl(c->fd, F_GETFD);
    if (fdflags == -1 || fcntl(c->fd, F_SETFD, fdflags | FD_CLOEXEC) == -1) {
        return REDIS_ERR;
    }
    c->flags &= ~REDIS_BLOCK;
    return REDIS_OK;
}

// Swift imports the fixed-size errstr array as a 128-element tuple; a pointer is easier to read.
static inline const char *tandem_redis_errstr(const redisContext *c) {
    return c->errstr;
}
// One RESP bulk string header and body at `p` (before `end`): `$<length>\r\n<body>\r\n`, the length in
// plain decimal (no sign, no leading zero, at most 9 digits: a pub/sub push of a gigabyte is left to
// hiredis). Returns the byte after the body's CRLF and sets the body, or NULL when the bytes are
// incomplete or laid out otherwise.
static inline const char *tandem_redis_bulk(const char *p, const char *end, const char **body, size_t *length) {
    if (p >= end || *p != '$') return NULL;
    p++;
    size_t value = 0;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9') {
        if (p - digits == 9) return NULL;
        value = value * 10 + (size_t)(*p - '0');
        p++;
    }
    if (p == digits || (*digits == '0' && p - digits > 1)) return NULL;
    if ((size_t)(end - p) < 2 || p[0] != '\r' || p[1] != '\n') return NULL;
    p += 2;
    if ((size_t)(end - p) < value + 2 || p[value] != '\r' || p[value + 1] != '\n') return NULL;
    *body = p;
    *length = value;
    return p + value + 2;
}

// A pub/sub message push at the front of what `r` has read and not yet parsed, located in its buffer
// without building a reply tree: `*3\r\n` then bulk strings TYPE (`message` or `smessage`, given),
// channel and payload. hiredis would make a reply tree of eight allocations for it and free it again,
// and Tandem would copy it into Swift values; a busy node's subscriber reads one such push per doc per
// tick from every node (issue 11). Returns how many bytes the push takes (the caller advances `r->pos` by
// that once it has copied the channel and payload out; nothing else of the reader changes) and sets
// `out`, or 0: no complete push of that exact layout is there (incomplete, another reply, another
// layout), or hiredis is part-way through a reply; hiredis's own parser then reads it as before.
typedef struct {
    const char *channel;
    size_t channel_length;
    const char *payload;
    size_t payload_length;
} tandem_redis_message;

static inline size_t tandem_redis_peek_message(const redisReader *r, const char *type, size_t type_length,
                                               tandem_redis_message *out) {
    // Nothing of the next reply consumed yet: either no reply was started, or hiredis set up its first
    // task and found no byte to read (it leaves that task, untyped, for the next call).
    if (r->err || !(r->ridx == -1 || (r->ridx == 0 && r->rstack[0].type < 0))) return 0;
    if (r->buf == NULL || r->pos >= r->len) return 0;
    const char *start = r->buf + r->pos, *end = r->buf + r->len;
    if (end - start < 4 || start[0] != '*' || start[1] != '3' || start[2] != '\r' || start[3] != '\n') return 0;
    const char *kind;
    size_t kind_length;
    const char *p = tandem_redis_bulk(start + 4, end, &kind, &kind_length);
    if (p == NULL || kind_length != type_length || memcmp(kind, type, type_length) != 0) return 0;
    p = tandem_redis_bulk(p, end, &out->channel, &out->channel_length);
    if (p == NULL) return 0;
    p = tandem_redis_bulk(p, end, &out->payload, &out->payload_length);
    if (p == NULL) return 0;
    return (size_t)(p - start);
}
#endif
