import ArgumentParser
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import TandemCore
import TandemRedis

#if canImport(Glibc)
import Glibc
#endif

// `tandem-bench bare-sync-server`: the yardstick of issue 8 — a BENCHMARK YARDSTICK, NOT A PRODUCT. A bare
// durable ordered relay that speaks just the part of protocol v1 that `tandem-bench sync` uses (welcome,
// join → joined + an empty snapshot, push → result to the pusher and patch to the doc's other members,
// ping → pong, `unavailable` with `retryAfterMs`) and does only what any durable ordered relay must:
// the WebSocket codec; one hop per read burst from a connection to its doc's loop; per doc, one Redis
// script call at a time carrying every push that waited (group commit: the script advances the doc's
// clock by the batch size and appends the entries to a log key), through TandemRedis's client on its own
// thread as the node does; once the reply is in, results and patches in clock order, one hop per
// member's loop. No JSON parsing beyond finding `doc`, `id` and `ops`, no validation (every push is a
// `commit` as sent: no rebase, no discard, no records kept), no checksums, no metrics, no history, no
// pub/sub, no authentication. Clocks start at 0 for each server process (its keys carry a per-process
// prefix), so run it on a fresh or shared Redis alike.
//
// Admission is the simplest that answers every push: a connection with `--max-pushes-in-flight`
// unanswered pushes has its next push refused at once, on its own loop, with a jittered
// `--retry-after-ms` hint.
//
// Run `tandem-bench sync` against it under the same load as against Tandem (scripts/bench.sh
// sync-10k-bare, sync-20k-bare, sync-80k-bare) to compare commits/s and CPU per commit (docs/benchmarks.md,
// issue 8, stop 28).

struct BareSyncServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bare-sync-server",
        abstract: "A bare durable ordered sync relay (group commit into Redis, no validation) to compare Tandem with.",
        discussion: """
            A benchmark yardstick, not a product. Serves /v1/ws (any path) with the frames tandem-bench sync \
            sends and reads: join, push, ping. Prints `listening ws=PORT` once bound; runs until killed.
            """)

    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(help: "Port to bind (0: any free port).") var port = 7071
    @Option(help: "Redis URL (the group commits' script runs there).") var redis = "redis://127.0.0.1:6379"
    @Option(help: "Event loop threads (Tandem uses one per core).") var threads = System.coreCount
    @Option(name: .customLong("max-frame-bytes"), help: "Largest frame accepted.") var maxFrameBytes = 65_536
    @Option(name: .customLong("max-batch"), help: "Most pushes of a doc in one script call.") var maxBatch = 512
    @Option(name: .customLong("max-pushes-in-flight"), help: "Unanswered pushes per connection before the next is refused.")
    var maxPushesInFlight = 8
    @Option(name: .customLong("retry-after-ms"), help: "Hint of a refusal (jittered between half and one and a half times).")
    var retryAfterMs = 100

    func validate() throws {
        guard threads > 0, maxFrameBytes > 0, maxPushesInFlight > 0, retryAfterMs > 0 else {
            throw ValidationError("threads, frame size, pushes in flight and retry hint must be > 0")
        }
        // Lua's `unpack` of the batch's entries: far below its stack limit (about 8,000).
        guard (1...2_000).contains(maxBatch) else { throw ValidationError("--max-batch must be 1...2000") }
    }

    func run() async throws {
        let options = BareSyncOptions(
            host: host, port: port, redisURL: redis, threads: threads, maxFrameBytes: maxFrameBytes, maxBatch: maxBatch,
            maxPushesInFlight: maxPushesInFlight, retryAfterMs: retryAfterMs)
        let server = try await BareSyncServer.start(options)
        let line = "bare-sync-server listening ws=\(server.port) threads=\(threads) redis=\(redis)\n"
        line.utf8CString.withUnsafeBufferPointer { p in _ = write(1, p.baseAddress!, p.count - 1) }
        try await server.channel.closeFuture.get()
    }
}

struct BareSyncOptions: Sendable {
    var host = "127.0.0.1"
    var port = 0
    var redisURL: String
    var threads = 2
    var maxFrameBytes = 65_536
    var maxBatch = 512
    var maxPushesInFlight = 8
    var retryAfterMs = 100
}

/// The running relay: its loops, its Redis client and its listening channel.
final class BareSyncServer: Sendable {
    struct RedisNotReachable: Error, CustomStringConvertible {
        let url: String
        var description: String { "bare-sync-server: no connection to \(url) within 10 s" }
    }

    let group: MultiThreadedEventLoopGroup
    let redis: RedisClient
    let channel: any Channel
    let port: Int

    private init(group: MultiThreadedEventLoopGroup, redis: RedisClient, channel: any Channel) {
        self.group = group
        self.redis = redis
        self.channel = channel
        port = channel.localAddress?.port ?? 0
    }

    /// Connects to Redis (waiting up to 10 s for it), then binds.
    static func start(_ options: BareSyncOptions) async throws -> BareSyncServer {
        let redis = try RedisClient(url: options.redisURL)
        redis.start()
        let deadline = monotonicNanos() + 10_000_000_000
        while !redis.isConnected {
            guard monotonicNanos() < deadline else {
                await redis.shutdown()
                throw RedisNotReachable(url: options.redisURL)
            }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads)
        let shards = BareSyncShards(loops: Array(group.makeIterator()), redis: redis, maxBatch: options.maxBatch)
        let limits = BareSyncConnection.Limits(maxPushesInFlight: options.maxPushesInFlight, retryAfterMs: options.retryAfterMs)
        let maxFrameBytes = options.maxFrameBytes
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // As Tandem: at most 16 reads per socket per loop turn.
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                let upgrader = NIOWebSocketServerUpgrader(
                    maxFrameSize: maxFrameBytes, automaticErrorHandling: true,
                    shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
                    upgradePipelineHandler: { channel, head in
                        let connection = BareSyncConnection(
                            shards: shards, loop: channel.eventLoop, sid: shards.nextSessionID(), user: BareQuery(uri: head.uri).user,
                            limits: limits)
                        do {
                            try channel.pipeline.syncOperations.addHandler(connection.writer, position: .first)
                            try channel.pipeline.syncOperations.addHandler(connection)
                        } catch {
                            return channel.eventLoop.makeFailedFuture(error)
                        }
                        return channel.eventLoop.makeSucceededVoidFuture()
                    })
                return channel.pipeline.configureHTTPServerPipeline(
                    withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
            }
        do {
            let channel = try await bootstrap.bind(host: options.host, port: options.port).get()
            return BareSyncServer(group: group, redis: redis, channel: channel)
        } catch {
            try? await group.shutdownGracefully()
            await redis.shutdown()
            throw error
        }
    }

    /// Closes the listener and every connection, then stops the loops and the Redis client.
    func shutdown() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
        await redis.shutdown()
    }
}

/// One client. The pushes of a read burst reach their doc's loop in one hop at the burst's end.
final class BareSyncConnection: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: the mutable state is touched on `loop` only; docs reach it with a hop.
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    struct Limits: Sendable {
        var maxPushesInFlight: Int
        var retryAfterMs: Int
    }

    /// A doc this connection joined: its name's bytes (what a push's `doc` is compared with) and shard.
    private struct Joined {
        let name: [UInt8]
        let shard: BareSyncShard
        let doc: String
    }

    let shards: BareSyncShards
    let loop: any EventLoop
    let sid: String
    /// `,"by":"SID","id":`: what every patch of this connection's pushes carries after its ops, made once.
    let byField: ByteBuffer
    let writer = BareFrameWriter()
    private let user: String
    private let limits: Limits
    private var joined: [Joined] = []
    /// The read burst's pushes, all for `joined[burstDoc]`.
    private var burst: [BareSyncPush] = []
    private var burstDoc = -1
    private var inFlight = 0
    private var needsFlush = false
    private var closed = false
    private var rng = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))

    init(shards: BareSyncShards, loop: any EventLoop, sid: String, user: String, limits: Limits) {
        self.shards = shards
        self.loop = loop
        self.sid = sid
        self.user = user
        self.limits = limits
        var by = ByteBuffer()
        by.writeString(#","by":""# + sid + #"","id":"#)
        byField = by
    }

    func handlerAdded(context: ChannelHandlerContext) {
        writer.write(
            BareFrame.text(
                #"{"t":"welcome","session":""# + sid + #"","node":"bare-sync","protocol":1,"user":""# + user + #"","resumed":false}"#))
        writer.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if frame.opcode == .text {
            text(frame.unmaskedData)
        } else {
            answerBareControlFrame(frame, context: context) {
                guard !closed else { return false }
                closed = true
                return true
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        handOver()
        if needsFlush {
            needsFlush = false
            writer.flush()
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        burst.removeAll()
        for j in joined {
            j.shard.loop.execute { [self] in j.shard.doc(j.doc).leave(self) }
        }
        joined.removeAll()
        context.fireChannelInactive()
    }

    // MARK: Called on `loop` by docs

    /// Writes frames of a doc's round (`answers` of them answer this connection's pushes); the doc flushes.
    func deliver(_ frame: ByteBuffer, answers: Bool) {
        if answers { inFlight -= 1 }
        writer.write(frame)
    }

    func flush() { writer.flush() }

    /// A push the doc could not commit (Redis failed): `unavailable`, retry later.
    func refused(id: ByteBuffer) {
        inFlight -= 1
        refuse(id: id)
        writer.flush()
    }

    // MARK: Reading

    /// `{"t":"X…`: push, ping or join, by the bytes at fixed offsets; a push's fields found by search.
    private func text(_ buffer: ByteBuffer) {
        let view = buffer.readableBytesView
        guard view.count > 8 else { return }
        switch (view[view.startIndex + 6], view[view.startIndex + 7]) {
        case (UInt8(ascii: "p"), UInt8(ascii: "u")):
            push(buffer)
        case (UInt8(ascii: "p"), UInt8(ascii: "i")):
            writer.write(Self.pong)
            needsFlush = true
        case (UInt8(ascii: "j"), _):
            guard let name = BareConnection.doc(in: buffer) else { return }
            join(name)
        default:
            break
        }
    }

    private func join(_ name: String) {
        let shard = shards.shard(for: name)
        if !joined.contains(where: { $0.doc == name }) { joined.append(Joined(name: Array(name.utf8), shard: shard, doc: name)) }
        // After the pushes read before it, on the same loop: the doc's tasks run in the order handed over.
        handOver()
        shard.loop.execute { [self] in shard.doc(name).join(self) }
    }

    private func push(_ buffer: ByteBuffer) {
        guard let fields = BareSyncPush.Fields(buffer) else { return }
        guard inFlight < limits.maxPushesInFlight else {
            refuse(id: fields.id)
            needsFlush = true
            return
        }
        guard let target = doc(named: fields.doc) else { return }
        if target != burstDoc {
            handOver()
            burstDoc = target
        }
        inFlight += 1
        burst.append(BareSyncPush(from: self, id: fields.id, ops: fields.ops))
    }

    /// The index in `joined` of the doc whose name is `name`'s bytes (a push to a doc not joined is dropped:
    /// the bench never sends one).
    private func doc(named name: ByteBuffer) -> Int? {
        name.withUnsafeReadableBytes { bytes in
            joined.firstIndex { j in
                j.name.count == bytes.count
                    && (bytes.isEmpty || j.name.withUnsafeBytes { memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) == 0 })
            }
        }
    }

    /// The burst's pushes to their doc's loop, in one hop.
    private func handOver() {
        guard !burst.isEmpty else { return }
        let pushes = burst
        let j = joined[burstDoc]
        burst.removeAll(keepingCapacity: true)
        j.shard.loop.execute { j.shard.doc(j.doc).received(pushes) }
    }

    private func refuse(id: ByteBuffer) {
        let hint = limits.retryAfterMs / 2 + Int.random(in: 0...limits.retryAfterMs, using: &rng)
        var b = BareFrame.start(capacity: 96 + id.readableBytes)
        b.writeStaticString(#"{"t":"error","code":"unavailable","message":"busy","id":"#)
        b.writeImmutableBuffer(id)
        b.writeStaticString(#","retryAfterMs":"#)
        b.writeDecimal(hint)
        b.writeStaticString("}")
        writer.write(BareFrame.finish(b))
    }

    private static let pong = BareFrame.text(#"{"t":"pong"}"#)
}

/// One push on its way to its doc: who sent it, its id as sent and its ops' bytes (slices of the frame).
struct BareSyncPush {
    let from: BareSyncConnection
    let id: ByteBuffer
    let ops: ByteBuffer

    /// A push's `doc`, `id` and `ops`, found by their keys (the bench writes `ops` last, and nothing in its
    /// pushes contains the keys searched for). Nil if one is missing.
    struct Fields {
        var doc: ByteBuffer
        var id: ByteBuffer
        var ops: ByteBuffer

        init?(_ buffer: ByteBuffer) {
            let found: (doc: Range<Int>, id: Range<Int>, ops: Range<Int>)? = buffer.withUnsafeReadableBytes { raw in
                var s = ByteScanner(raw)
                guard let docStart = s.find(Self.docKey, from: 0).map({ $0 + Self.docKey.count }),
                    let docEnd = memchr(raw.baseAddress! + docStart, 0x22, raw.count - docStart)
                        .map({ raw.baseAddress!.distance(to: UnsafeRawPointer($0)) }),
                    let idStart = s.find(Self.idKey, from: docEnd).map({ $0 + Self.idKey.count })
                else { return nil }
                var idEnd = idStart
                while idEnd < raw.count, raw[idEnd] != UInt8(ascii: ","), raw[idEnd] != UInt8(ascii: "}") { idEnd += 1 }
                s.index = idEnd
                guard idEnd > idStart, s.skip(past: Self.opsKey), raw.count - 1 > s.index else { return nil }
                return (docStart..<docEnd, idStart..<idEnd, s.index..<(raw.count - 1))
            }
            guard let found else { return nil }
            func slice(_ r: Range<Int>) -> ByteBuffer { buffer.getSlice(at: buffer.readerIndex + r.lowerBound, length: r.count)! }
            doc = slice(found.doc)
            id = slice(found.id)
            ops = slice(found.ops)
        }

        private static let docKey = StaticPattern(#""doc":""#)
        private static let idKey = StaticPattern(#""id":"#)
        private static let opsKey = StaticPattern(#""ops":"#)
    }
}
