import CHiredis

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
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
    /// Reused scratch space for a command's RESP bytes, so appending a command does not allocate.
    private var resp: [UInt8] = []

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

    /// Serializes `command` into hiredis's output buffer; nothing is written to the socket yet.
    ///
    /// The RESP bytes are written here (`RedisCommand.writeRESP`) and handed over in one piece:
    /// `redisAppendCommandArgv` formats each argument's header with `sdscatfmt`, which was about 24,000
    /// instructions per command in the callgrind profile of the commit path (a group commit has dozens
    /// of arguments).
    func append(_ command: RedisCommand) throws(HiredisFailure) {
        guard let context else { throw HiredisFailure(description: "connection closed") }
        resp.removeAll(keepingCapacity: true)
        command.writeRESP(into: &resp)
        let status = resp.withUnsafeBufferPointer { bytes in
            // Never empty (at least `*1\r\n$…`), so baseAddress is set.
            redisAppendFormattedCommand(
                context, UnsafeRawPointer(bytes.baseAddress!).assumingMemoryBound(to: CChar.self), bytes.count)
        }
        if status != REDIS_OK { throw failure() }
    }

    /// Writes as much of the output buffer as the socket takes. Returns `true` when it is empty.
    func write() throws(HiredisFailure) -> Bool {
        guard let context else { throw HiredisFailure(description: "connection closed") }
        var done: Int32 = 0
        if redisBufferWrite(context, &done) != REDIS_OK { throw failure() }
        return done != 0
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
