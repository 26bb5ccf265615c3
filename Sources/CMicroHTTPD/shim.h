#ifndef TANDEM_CMICROHTTPD_SHIM_H
#define TANDEM_CMICROHTTPD_SHIM_H
// Debian 12 ships libmicrohttpd 0.9.75.
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdarg.h>
#include <microhttpd.h>
#endif
