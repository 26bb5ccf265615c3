import CHiredis

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif

/// Why hiredis gave up on a connection.
struct HiredisFailure: Error, CustomStringConvertible {
    var description: String
}

/// The one Swift owner of a `redisContext`.
///
/// Thread-confined: created, used and freed on the connection's owner thread only, so it is
/// deliberately not `Sendable`. The context is freed exactly once, by ``close()`` or `deinit`.
final class HiredisContext {
    private var context: UnsafeMutablePointer<redisContext>?
    /// Commands not yet written to the socket, from `written` on; reused from burst to burst.
    private var output: [UInt8] = []
    private var written = 0
    /// Output capacity kept once everything is written (more is freed).
    private static let keptOutputCapacity = 1 << 20

    private init(context: UnsafeMutablePointer<redisContext>) {
        self.context = context
    }

    deinit {
        close()
    }

    /// Connects (blocking, at most `timeout`), then switches the socket to non-blocking I/O and turns
    /// on TCP keep-alive. hiredis itself sets TCP_NODELAY on TCP connections.
    static func connect(to address: RedisEndpoint.Address, timeout: Int64) throws(HiredisFailure) -> HiredisContext {
        let timeval = timeval(
            tv_sec: .init(timeout / 1_000_000_000),
            tv_usec: .init(timeout % 1_000_000_000 / 1000)
        )
        let raw: UnsafeMutablePointer<redisContext>?
        switch address {
        case .tcp(let host, let port):
            raw = redisConnectWithTimeout(host, Int32(port), timeval)
        case .unix(let path):
            raw = redisConnectUnixWithTimeout(path, timeval)
        }
        guard let raw else { throw HiredisFailure(description: "cannot allocate a hiredis context") }
        let connection = HiredisContext(context: raw)
        if raw.pointee.err != 0 {
            throw connection.failure()  // `connection` frees the context on deinit
        }
        if case .tcp = address, redisEnableKeepAlive(raw) != REDIS_OK {
            throw connection.failure()
        }
        if tandem_redis_set_nonblocking(raw) != REDIS_OK {
            throw HiredisFailure(description: "cannot make the socket non-blocking: errno \(errno)")
        }
        return connection
    }

    /// The socket, for `poll()`.
    var fileDescriptor: Int32 {
        context?.pointee.fd ?? -1
    }

    /// Queues `command`'s bytes for the socket; nothing is written yet.
    ///
    /// The output buffer is ours, not hiredis's: a command is already RESP (``RedisCommand``), so appending
    /// it is one copy into a buffer whose capacity is kept from burst to burst. (hiredis's
    /// `redisAppendCommandArgv` formats each argument with `sdscatfmt`, about 24,000 instructions per group
    /// commit in the callgrind profile of the commit path, and its output buffer is freed and grown afresh
    /// after every write that empties it.) hiredis still reads and parses the replies.
    func append(_ command: RedisCommand) throws(HiredisFailure) {
        guard context != nil else { throw HiredisFailure(description: "connection closed") }
        output.append(contentsOf: command.resp)
    }

    /// Writes as much of the output as the socket takes. Returns `true` when all of it is written.
    func write() throws(HiredisFailure) -> Bool {
        guard let context else { throw HiredisFailure(description: "connection closed") }
        let fd = context.pointee.fd
        while written < output.count {
            let result = output.withUnsafeBytes { bytes in
                systemWrite(fd, bytes.baseAddress! + written, bytes.count - written)
            }
            if result > 0 {
                written += result
            } else if result < 0 && errno == EINTR {
                continue
            } else if result < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                return false
            } else {
                throw HiredisFailure(description: result == 0 ? "write returned 0" : String(cString: strerror(errno)))
            }
        }
        written = 0
        if output.capacity > Self.keptOutputCapacity {
            output = []  // after a burst of huge commands: give the memory back
            output.reserveCapacity(Self.keptOutputCapacity)
        } else {
            output.removeAll(keepingCapacity: true)
        }
        return true
    }

    /// Reads what the socket has (up to hiredis's 16 KiB chunk) into the reply parser.
    /// EAGAIN is not an error (the socket is non-blocking); end of stream is.
    func read() throws(HiredisFailure) {
        guard let context else { throw HiredisFailure(description: "connection closed") }
        if redisBufferRead(context) != REDIS_OK { throw failure() }
    }

    /// The next complete reply already read, or `nil` if more bytes are needed.
    func nextReply() throws(HiredisFailure) -> RedisValue? {
        guard let context else { throw HiredisFailure(description: "connection closed") }
        var reply: UnsafeMutableRawPointer?
        if redisGetReplyFromReader(context, &reply) != REDIS_OK { throw failure() }
        guard let reply else { return nil }
        // Copy into Swift values and free the C tree right away: no redisReply outlives this call.
        defer { freeReplyObject(reply) }
        return RedisValue(hiredisReply: reply.assumingMemoryBound(to: redisReply.self))
    }

    /// The next reply if it is a pub/sub message push of type `type` (`message` or `smessage`) already read
    /// in full, taken straight from hiredis's read buffer (``RedisPubSubPush/take(from:type:)``); `nil`
    /// otherwise, and ``nextReply()`` reads what is there.
    func nextMessage(type: [UInt8]) -> RedisPubSubMessage? {
        guard let reader = context?.pointee.reader else { return nil }
        return RedisPubSubPush.take(from: reader, type: type)
    }

    /// Frees the context and closes its socket. Safe to call more than once.
    func close() {
        guard let context else { return }
        self.context = nil
        redisFree(context)
    }

    private func failure() -> HiredisFailure {
        guard let context else { return HiredisFailure(description: "connection closed") }
        let message = String(cString: tandem_redis_errstr(context))
        return HiredisFailure(description: message.isEmpty ? "hiredis error \(context.pointee.err)" : message)
    }
}
