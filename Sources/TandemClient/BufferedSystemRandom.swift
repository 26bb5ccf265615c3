#if canImport(Glibc)
import Glibc
#endif

/// The system's cryptographically secure random bytes, drawn a kilobyte at a time.
///
/// Why. RFC 6455 §5.3 wants every client frame masked with a fresh, unpredictable key, and
/// `WebSocketMaskingKey.random()` draws each from `SystemRandomNumberGenerator` — on Linux one `getrandom`
/// system call per frame sent. tandem-bench sends tens of thousands of frames a second from one process
/// beside the server (strace of sync-20k: 20,059 `getrandom` calls in 3 s, masks and the bench's own
/// draws): CPU the node under test did not get. The bytes are the same kernel generator's, only fetched
/// 128 draws at a time; the buffer belongs to one connection's handler (one event loop), never shared.
struct BufferedSystemRandom: RandomNumberGenerator {
    private var words = [UInt64](repeating: 0, count: 128)
    private var index = 128

    mutating func next() -> UInt64 {
        if index == words.count { refill() }
        defer { index += 1 }
        return words[index]
    }

    private mutating func refill() {
        var filled = 0
        #if canImport(Glibc)
        // The kernel's generator through /dev/urandom (Glibc's module has no `getrandom`): three calls a
        // kilobyte. It never blocks once the system has booted.
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            filled = words.withUnsafeMutableBytes { raw in max(0, read(fd, raw.baseAddress, raw.count)) }
            close(fd)
        }
        #endif
        // A short read (or no /dev/urandom): the rest word by word from the standard generator.
        var system = SystemRandomNumberGenerator()
        for i in (filled / 8)..<words.count { words[i] = system.next() }
        index = 0
    }
}
