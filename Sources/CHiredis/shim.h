#ifndef TANDEM_CHIREDIS_SHIM_H
#define TANDEM_CHIREDIS_SHIM_H
// Debian 12 ships hiredis 0.14.1 (headers in /usr/include/hiredis, found through pkg-config).
#include <hiredis.h>
#endif
