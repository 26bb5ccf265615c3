#ifndef TANDEM_CMICROHTTPD_SHIM_H
#define TANDEM_CMICROHTTPD_SHIM_H
// Debian 12 ships libmicrohttpd 0.9.75.
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdarg.h>
#include <stddef.h>
#include <microhttpd.h>

// Swift does not import C variadic functions, so every variadic libmicrohttpd
// entry point the ops server needs gets a fixed-arity wrapper here. The
// wrappers add no behaviour of their own.

// MHD_start_daemon is variadic: pass all options as one MHD_OPTION_ARRAY
// (terminated by an MHD_OPTION_END item, which the caller must supply).
// No accept-policy callback: the ops server binds to a chosen host instead.
static inline struct MHD_Daemon *
tandem_mhd_start_daemon(unsigned int flags,
                        uint16_t port,
                        MHD_AccessHandlerCallback handler,
                        void *handler_cls,
                        struct MHD_OptionItem *options)
{
    return MHD_start_daemon(flags, port, NULL, NULL, handler, handler_cls,
                            MHD_OPTION_ARRAY, options,
                            MHD_OPTION_END);
}

// MHD_get_daemon_info is variadic; this returns the port the listen socket is
// actually bound to (the real port when 0 was requested), or 0 if unknown.
static inline uint16_t
tandem_mhd_daemon_bind_port(struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info == NULL ? 0 : info->port;
}

// MHD_OPTION_ARRAY wants the function pointer of two-pointer options cast to
// intptr_t; doing that cast in C keeps Swift free of unsafeBitCast on
// function pointers. Builds the MHD_OPTION_NOTIFY_COMPLETED item.
static inline struct MHD_OptionItem
tandem_mhd_option_notify_completed(MHD_RequestCompletedCallback callback,
                                   void *cls)
{
    struct MHD_OptionItem item = {
        MHD_OPTION_NOTIFY_COMPLETED, (intptr_t) callback, cls
    };
    return item;
}

// Same intptr_t cast as above, for the MHD_OPTION_EXTERNAL_LOGGER item.
static inline struct MHD_OptionItem
tandem_mhd_option_external_logger(MHD_LogCallback callback, void *cls)
{
    struct MHD_OptionItem item = {
        MHD_OPTION_EXTERNAL_LOGGER, (intptr_t) callback, cls
    };
    return item;
}

// Same intptr_t cast as above, for the MHD_OPTION_NOTIFY_CONNECTION item
// (connection started / closed: the ops server's connection admission).
static inline struct MHD_OptionItem
tandem_mhd_option_notify_connection(MHD_NotifyConnectionCallback callback,
                                    void *cls)
{
    struct MHD_OptionItem item = {
        MHD_OPTION_NOTIFY_CONNECTION, (intptr_t) callback, cls
    };
    return item;
}

// MHD_get_connection_info is variadic; these return one field each.

// The connection's socket, or -1 if unknown.
static inline int
tandem_mhd_connection_fd(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info == NULL ? -1 : (int) info->connect_fd;
}

// The client's address (owned by libmicrohttpd, valid while the
// connection is), or NULL if unknown.
static inline const struct sockaddr *
tandem_mhd_connection_address(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return info == NULL ? NULL : info->client_addr;
}

#endif
