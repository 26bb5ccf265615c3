import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The bench's event loops, each with its own statistics object that only that loop touches (so the
/// receive path counts and records latencies without locks). Clients are pinned to `loop(for:)`.
final class LoopSet<Stats: AnyObject>: @unchecked Sendable {
    // @unchecked: `stats[i]` is only used on `loops[i]` (by the clients pinned there) until `collect`,
    // which reads each on its own loop.
    let group: MultiThreadedEventLoopGroup
    let loops: [any EventLoop]
    private let stats: [Stats]

    init(threads: Int, makeStats: () -> Stats) {
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        loops = Array(group.makeIterator())
        stats = loops.map { _ in makeStats() }
    }

    func index(for client: Int) -> Int { client % loops.count }
    func loop(for client: Int) -> any EventLoop { loops[index(for: client)] }
    /// Only to be used on `loop(for: client)`.
    func stats(for client: Int) -> Stats { stats[index(for: client)] }

    /// Runs `body` on every loop with that loop's stats and returns the results.
    func collect<T: Sendable>(_ body: @escaping @Sendable (Stats) -> T) async throws -> [T] {
        var out: [T] = []
        for (i, loop) in loops.enumerated() {
            let s = UnsafeTransfer(stats[i])
            out.append(try await loop.submit { body(s.value) }.get())
        }
        return out
    }

    func shutdown() async {
        try? await group.shutdownGracefully()
    }
}

/// Carries a loop-confined reference to its loop.
struct UnsafeTransfer<T>: @unchecked Sendable {  // @unchecked: the caller only unwraps `value` on the loop it is confined to
    let value: T
    init(_ value: T) { self.value = value }
}

/// A counter any thread may bump (used for progress: joined clients, closed clients).
final class SharedCounter: Sendable {
    private let box = NIOLockedValueBox(0)
    func add(_ n: Int = 1) { box.withLockedValue { $0 += n } }
    var value: Int { box.withLockedValue { $0 } }
}

final class SharedFlag: Sendable {
    private let box = NIOLockedValueBox(false)
    func set() { box.withLockedValue { $0 = true } }
    var isSet: Bool { box.withLockedValue { $0 } }
}

/// Waits until `condition` holds, polling every 50 ms; false on timeout.
func waitUntil(timeoutSeconds: Double, _ condition: () -> Bool) async -> Bool {
    let deadline = monotonicNanos() + UInt64(timeoutSeconds * 1e9)
    while !condition() {
        if monotonicNanos() > deadline { return false }
        try? await Task.sleep(nanoseconds: 50_000_000)
    }
    return true
}

extension ByteBuffer {
    /// A buffer with room in front for the WebSocket frame header, so the client frames it without a copy.
    static func framePayload(capacity: Int) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: capacity + 14)
        b.moveWriterIndex(forwardBy: 14)
        b.moveReaderIndex(forwardBy: 14)
        return b
    }

    /// Writes `v` in decimal without allocating.
    mutating func writeDecimal(_ v: UInt64) {
        if v == 0 {
            writeInteger(UInt8(ascii: "0"))
            return
        }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = v
        var count = 0
        withUnsafeMutableBytes(of: &digits) { d in
            while n > 0 {
                d[19 - count] = UInt8(ascii: "0") + UInt8(n % 10)
                n /= 10
                count += 1
            }
            writeBytes(UnsafeRawBufferPointer(rebasing: d[(20 - count)...]))
        }
    }

    mutating func writeDecimal(_ v: Int) {
        if v < 0 {
            writeInteger(UInt8(ascii: "-"))
            writeDecimal(UInt64(-v))
        } else {
            writeDecimal(UInt64(v))
        }
    }
}
