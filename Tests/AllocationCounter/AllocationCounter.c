// Replaces the malloc family for the test executable (a definition in the executable wins over
// libc's for every library loaded), forwarding to glibc's exported implementations. Used only by the
// allocation-counting tests (issue 14); the forwarding costs one thread-local read per call.
#include <errno.h>
#include <execinfo.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "AllocationCounter.h"

// Under AddressSanitizer or ThreadSanitizer (`make test-sanitizers`) the sanitizer's own malloc must
// serve every allocation: replacing it here would bypass its bookkeeping (ThreadSanitizer crashed the
// test executable at start). Then nothing is replaced and the counter reports itself unavailable.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TANDEM_SANITIZED 1
#endif
#endif


extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

// Initial-exec thread-locals in the executable: reading them allocates nothing, so malloc may.
static __thread int counting;
static __thread long count;
// `TANDEM_ALLOCATION_TRACE=1`: every counted allocation also writes its call stack to stderr (mangled
// symbols; pipe through `swift demangle`), so a test's count can be broken down by where it comes from.
static __thread int tracing;

static void counted(void) {
    count++;
    if (!tracing) return;
    // backtrace() may allocate (the unwinder is loaded on first use): not counted, not traced.
    counting = 0;
    void *frames[32];
    int depth = backtrace(frames, 32);
    static const char separator[] = "--- allocation\n";
    (void)!write(2, separator, sizeof separator - 1);
    backtrace_symbols_fd(frames, depth, 2);
    counting = 1;
}

#ifndef TANDEM_SANITIZED
void *malloc(size_t size) {
    if (counting) counted();
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
    if (counting) counted();
    return __libc_calloc(n, size);
}

void *realloc(void *pointer, size_t size) {
    if (counting) counted();
    return __libc_realloc(pointer, size);
}

void free(void *pointer) { __libc_free(pointer); }

void *memalign(size_t alignment, size_t size) {
    if (counting) counted();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    if (counting) counted();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    if (counting) counted();
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    *result = pointer;
    return 0;
}

#endif  // TANDEM_SANITIZED

int tandem_allocation_counter_available(void) {
#ifdef TANDEM_SANITIZED
    return 0;
#else
    return 1;
#endif
}

void tandem_allocation_counter_start(void) {
    const char *trace = getenv("TANDEM_ALLOCATION_TRACE");
    tracing = trace != NULL && trace[0] == '1';
    count = 0;
    counting = 1;
}

long tandem_allocation_counter_stop(void) {
    counting = 0;
    return count;
}
