#ifndef TANDEM_ALLOCATION_COUNTER_H
#define TANDEM_ALLOCATION_COUNTER_H

/// Counts the heap allocations (malloc, calloc, realloc, memalign, aligned_alloc, posix_memalign) the
/// calling thread makes between `start` and `stop`, the way swift-nio's allocation tests do: this
/// target defines those functions for the whole test executable and forwards each to glibc's own
/// (`__libc_malloc` & co.). Every Swift object, array, dictionary, string and ByteBuffer storage comes
/// from one of them. The count is per thread, so other tests' threads never add to it.
void tandem_allocation_counter_start(void);
/// 1 when allocations are counted; 0 in a sanitizer build, whose malloc must not be replaced.
int tandem_allocation_counter_available(void);
/// Stops counting and returns the count since `start`. With `TANDEM_ALLOCATION_TRACE=1` in the
/// environment, each counted allocation's call stack is written to stderr.
long tandem_allocation_counter_stop(void);

#endif
