#ifndef TANDEM_CBZIP2_SHIM_H
#define TANDEM_CBZIP2_SHIM_H
// libbz2 (Debian: libbz2-dev; the runtime library is part of every Debian system, dpkg links it)
// compresses a doc's sealed history, blob kind `b` (issue 15, docs/history.md).
#include <bzlib.h>
#endif
