#ifndef TANDEM_CZLIB_SHIM_H
#define TANDEM_CZLIB_SHIM_H
// zlib (Debian: zlib1g-dev) compresses a doc's sealed history (issue 15, docs/history.md).
#include <zlib.h>
#endif
