#ifndef TANDEM_CHIREDIS_SHIM_H
#define TANDEM_CHIREDIS_SHIM_H
// Debian 12 ships hiredis 0.14.1 (headers in /usr/include/hiredis, found through pkg-config).
#include <hiredis.h>
#include <fcntl.h>

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
#endif
