import ArgumentParser
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

#if canImport(Glibc)
import Glibc
#endif

// `tandem-bench bare-server`: the yardstick of issue 14. A bare SwiftNIO fan-out server that speaks just
// enough of protocol v1 for `tandem-bench presence` (welcome, join → joined, presence → per-tick deltas,
// ping → pong) and nothing else: no authentication, no JSON parsing or validation, no rate limits, no
// Redis, no other nodes, no slow-consumer handling. What it does do is what any fan-out server must:
// the WebSocket codec, one hop per read burst from a connection to its doc's loop, latest state per
// session, and per doc per tick one delta framed once into one buffer and written to every member, one
// hop and one flush per member's loop.
//
// Run `tandem-bench presence` against it under the same load as against Tandem (scripts/bench.sh
// presence-bare, presence-2k-bare) to compare deliveries/s, p99 and CPU per delivery
// (scripts/bench-compare.py).

struct BareServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bare-server",
        abstract: "A bare NIO presence fan-out server (no JSON parsing, no Redis) to compare Tandem with.",
        discussion: """
            Serves /v1/ws (any path) with the frames tandem-bench presence sends and reads: join, presence, \
            ping. Prints `listening ws=PORT` once bound; runs until killed.
            """)

    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(help: "Port to bind (0: any free port).") var port = 7070
    @Option(name: .customLong("tick-ms"), help: "Presence tick (Tandem's --tick-ms default).") var tickMs = 50
    @Option(help: "Event loop threads (Tandem uses one per core).") var threads = System.coreCount
    @Option(name: .customLong("max-frame-bytes"), help: "Largest frame accepted.") var maxFrameBytes = 65_536
    @Option(
        name: .customLong("node-id"),
        help: "The node name in every entry (scripts/bench.sh passes the Tandem run's, so entries are as long).")
    var nodeID = "bare"

    func validate() throws {
        guard tickMs > 0, threads > 0, maxFrameBytes > 0 else { throw ValidationError("tick, threads and frame size must be > 0") }
    }

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let shards = BareShards(loops: Array(group.makeIterator()), tickMs: tickMs, nodeID: nodeID)
        let maxFrameBytes = self.maxFrameBytes
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
                        let query = BareQuery(uri: head.uri)
                        let connection = BareConnection(
                            shards: shards, loop: channel.eventLoop, sid: shards.nextSessionID(), user: query.user, name: query.name)
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
        let channel = try await bootstrap.bind(host: host, port: port).get()
        let line = "bare-server listening ws=\(channel.localAddress?.port ?? port) threads=\(threads) tick=\(tickMs)ms\n"
        line.utf8CString.withUnsafeBufferPointer { p in _ = write(1, p.baseAddress!, p.count - 1) }
        try await channel.closeFuture.get()
    }
}

/// `user` and `name` from the upgrade request's query (the bench's values are URL-safe).
struct BareQuery {
    var user = "anonymous"
    var name = "anonymous"

    init(uri: String) {
        guard let q = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return }
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { continue }
            if kv[0] == "user" { user = String(kv[1]) }
            if kv[0] == "name" { name = String(kv[1]) }
        }
    }
}

/// One shard per event loop; a doc lives on the shard its name hashes to (as Tandem's doc shards).
final class BareShards: Sendable {
    let shards: [BareShard]
    let nodeID: String
    private let sessions = NIOLockedValueBox<UInt64>(0)

    init(loops: [any EventLoop], tickMs: Int, nodeID: String) {
        self.nodeID = nodeID
        shards = loops.map { BareShard(loop: $0) }
        for shard in shards { shard.start(tickMs: tickMs) }
    }

    func shard(for doc: String) -> BareShard { shards[bareShardIndex(of: doc, count: shards.count)] }

    /// As long as Tandem's (`SessionID.make`: 22 characters): every entry carries its sid, and the bytes
    /// per entry are what the kernel copies and the bench scans (with `s` and a counter, entries were 31
    /// bytes shorter than Tandem's at 2,000 / 40 together with the node name, 166 against 197).
    func nextSessionID() -> String { bareSessionID(sessions.withLockedValue { $0 += 1; return $0 }) }

    static let sessionIDLength = 22
}

/// The docs of one loop and their tick.
final class BareShard: @unchecked Sendable {  // @unchecked: `docs` is touched on `loop` only
    let loop: any EventLoop
    private var docs: [String: BareDoc] = [:]

    init(loop: any EventLoop) { self.loop = loop }

    func start(tickMs: Int) {
        let tick = TimeAmount.milliseconds(Int64(tickMs))
        loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [self] _ in
            for doc in docs.values { doc.tick() }
        }
    }

    /// On `loop`: the doc named `name`, made on first use.
    func doc(_ name: String) -> BareDoc {
        if let doc = docs[name] { return doc }
        let doc = BareDoc(name: name)
        docs[name] = doc
        return doc
    }
}

/// One doc's sessions, addressed by slot; confined to its shard's loop.
final class BareDoc: @unchecked Sendable {  // @unchecked: used on its shard's loop only
    struct Session {
        let connection: BareConnection
        /// `{"name":…,"node":…,"role":"editor","sid":…,"state":`
        let head: ByteBuffer
        /// `,"user":…,"v":`
        let tail: ByteBuffer
        var state: ByteBuffer
        var version: UInt64
        var isNew = true
        var isDirty = true
    }

    let name: String
    /// `{"t":"presence","doc":"NAME","joined":[`
    private let deltaHead: ByteBuffer
    private var sessions: [Session?] = []
    private var freeSlots: [Int] = []
    private var dirty: [Int] = []
    private var left: [String] = []
    /// Members by event loop (rebuilt after a join or leave).
    private var groups: [(any EventLoop, [BareConnection])]?
    private var memberCount = 0

    init(name: String) {
        self.name = name
        var b = ByteBuffer()
        b.writeString(#"{"t":"presence","doc":""# + name + #"","joined":["#)
        deltaHead = b
    }

    func join(_ connection: BareConnection, sid: String, user: String, name: String, node: String, state: ByteBuffer) -> (slot: Int, joined: ByteBuffer) {
        var head = ByteBuffer()
        head.writeString(#"{"name":""# + name + #"","node":""# + node + #"","role":"editor","sid":""# + sid + #"","state":"#)
        var tail = ByteBuffer()
        tail.writeString(#","user":""# + user + #"","v":"#)
        let session = Session(connection: connection, head: head, tail: tail, state: state, version: 1)
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            sessions[slot] = session
        } else {
            slot = sessions.count
            sessions.append(session)
        }
        dirty.append(slot)
        memberCount += 1
        groups = nil
        var joined = BareFrame.start(capacity: 64 + memberCount * 160)
        joined.writeString(#"{"t":"joined","doc":""# + self.name + #"","role":"editor","presence":["#)
        var first = true
        for s in sessions {
            guard let s else { continue }
            if !first { joined.writeStaticString(",") }
            first = false
            Self.writeEntry(s, into: &joined)
        }
        joined.writeStaticString("]}")
        return (slot, BareFrame.finish(joined))
    }

    func update(slot: Int, state: ByteBuffer) {
        guard slot < sessions.count, sessions[slot] != nil else { return }
        sessions[slot]!.state = state
        sessions[slot]!.version += 1
        if !sessions[slot]!.isDirty {
            sessions[slot]!.isDirty = true
            dirty.append(slot)
        }
    }

    func leave(slot: Int) {
        guard slot < sessions.count, let s = sessions[slot] else { return }
        left.append(s.connection.sid)
        sessions[slot] = nil
        freeSlots.append(slot)
        memberCount -= 1
        groups = nil
    }

    func tick() {
        guard !dirty.isEmpty || !left.isEmpty else { return }
        var frame = BareFrame.start(capacity: 64 + dirty.count * 160)
        frame.writeImmutableBuffer(deltaHead)
        var first = true
        for slot in dirty where sessions[slot]?.isNew == true {
            if !first { frame.writeStaticString(",") }
            first = false
            Self.writeEntry(sessions[slot]!, into: &frame)
        }
        frame.writeStaticString(#"],"updated":["#)
        first = true
        for slot in dirty where sessions[slot]?.isNew == false {
            if !first { frame.writeStaticString(",") }
            first = false
            Self.writeEntry(sessions[slot]!, into: &frame)
        }
        frame.writeStaticString(#"],"left":["#)
        for (i, sid) in left.enumerated() {
            if i > 0 { frame.writeStaticString(",") }
            frame.writeStaticString("\"")
            frame.writeString(sid)
            frame.writeStaticString("\"")
        }
        frame.writeStaticString("]}")
        for slot in dirty where sessions[slot] != nil {
            sessions[slot]!.isNew = false
            sessions[slot]!.isDirty = false
        }
        dirty.removeAll(keepingCapacity: true)
        left.removeAll(keepingCapacity: true)
        let buffer = BareFrame.finish(frame)
        for (loop, members) in memberGroups() {
            loop.execute {
                for m in members { m.write(buffer) }
                for m in members { m.flush() }
            }
        }
    }

    private func memberGroups() -> [(any EventLoop, [BareConnection])] {
        if let groups { return groups }
        var byLoop: [ObjectIdentifier: (any EventLoop, [BareConnection])] = [:]
        for s in sessions {
            guard let s else { continue }
            let key = ObjectIdentifier(s.connection.loop)
            byLoop[key, default: (s.connection.loop, [])].1.append(s.connection)
        }
        let made = Array(byLoop.values)
        groups = made
        return made
    }

    private static func writeEntry(_ s: Session, into buffer: inout ByteBuffer) {
        buffer.writeImmutableBuffer(s.head)
        buffer.writeImmutableBuffer(s.state)
        buffer.writeImmutableBuffer(s.tail)
        buffer.writeDecimal(s.version)
        buffer.writeStaticString("}")
    }
}

/// A text frame built in place: the payload is written after room for the largest header, which is
/// filled in front of it once the length is known (one buffer, written as it is to every member).
enum BareFrame {
    static let headerRoom = 10

    static func start(capacity: Int) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: headerRoom + capacity)
        b.moveWriterIndex(forwardBy: headerRoom)
        b.moveReaderIndex(forwardBy: headerRoom)
        return b
    }

    static func finish(_ payload: ByteBuffer) -> ByteBuffer {
        var b = payload
        let length = b.readableBytes
        let headerBytes = length < 126 ? 2 : (length <= 0xFFFF ? 4 : 10)
        let at = b.readerIndex - headerBytes
        b.setInteger(UInt8(0x81), at: at)  // FIN, text
        if length < 126 {
            b.setInteger(UInt8(length), at: at + 1)
        } else if length <= 0xFFFF {
            b.setInteger(UInt8(126), at: at + 1)
            b.setInteger(UInt16(length), at: at + 2)
        } else {
            b.setInteger(UInt8(127), at: at + 1)
            b.setInteger(UInt64(length), at: at + 2)
        }
        b.moveReaderIndex(to: at)
        return b
    }

    static func text(_ s: String) -> ByteBuffer {
        var b = start(capacity: s.utf8.count)
        b.writeString(s)
        return finish(b)
    }
}

/// Writes complete frames from the head of the pipeline (past the WebSocket encoder), like Tandem's
/// `PreframedWriter`.
final class BareFrameWriter: ChannelOutboundHandler, RemovableChannelHandler, @unchecked Sendable {
    // @unchecked: used on its channel's loop only
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }
    func write(_ frame: ByteBuffer) { context?.write(wrapOutboundOut(frame), promise: nil) }
    func flush() { context?.flush() }
}

/// One client. Inbound presence of a read burst reaches the doc's loop in one hop at the burst's end
/// (latest state only: the tick keeps only the latest anyway).
final class BareConnection: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: the mutable state is touched on `loop` only; `doc`/`slot` are handed over from the
    // doc's loop with a hop.
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let shards: BareShards
    let sid: String
    let user: String
    let name: String
    let writer = BareFrameWriter()
    let loop: any EventLoop
    private var shard: BareShard?
    private var doc: BareDoc?
    private var slot = -1
    private var latest: ByteBuffer?
    private var closed = false

    init(shards: BareShards, loop: any EventLoop, sid: String, user: String, name: String) {
        self.shards = shards
        self.loop = loop
        self.sid = sid
        self.user = user
        self.name = name
    }

    func handlerAdded(context: ChannelHandlerContext) {
        writer.write(
            BareFrame.text(
                #"{"t":"welcome","session":""# + sid + #"","node":""# + shards.nodeID + #"","protocol":1,"user":""# + user
                    + #"","resumed":false}"#))
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
        if let state = latest, let doc, let shard {
            let slot = self.slot
            shard.loop.execute { doc.update(slot: slot, state: state) }
        }
        latest = nil
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        if let doc, let shard {
            let slot = self.slot
            shard.loop.execute { doc.leave(slot: slot) }
        }
        doc = nil
        context.fireChannelInactive()
    }

    func write(_ frame: ByteBuffer) { writer.write(frame) }
    func flush() { writer.flush() }

    /// `{"t":"X…`: join, presence or ping, found by the bytes at fixed offsets (no parsing).
    private func text(_ buffer: ByteBuffer) {
        let view = buffer.readableBytesView
        guard view.count > 8 else { return }
        let b6 = view[view.startIndex + 6]
        let b7 = view[view.startIndex + 7]
        switch (b6, b7) {
        case (UInt8(ascii: "p"), UInt8(ascii: "r")):
            latest = Self.state(in: buffer)
        case (UInt8(ascii: "p"), UInt8(ascii: "i")):
            writer.write(BareFrame.text(#"{"t":"pong"}"#))
            writer.flush()
        case (UInt8(ascii: "j"), _):
            guard doc == nil, shard == nil, let name = Self.doc(in: buffer) else { return }
            let state = Self.state(in: buffer) ?? ByteBuffer(string: "{}")
            let shard = shards.shard(for: name)
            self.shard = shard
            let (sid, user, displayName) = (self.sid, self.user, self.name)
            shard.loop.execute { [self] in
                let doc = shard.doc(name)
                let (slot, joined) = doc.join(self, sid: sid, user: user, name: displayName, node: shards.nodeID, state: state)
                self.loop.execute { [self] in
                    guard !self.closed else { return doc.leaveOnLoop(slot: slot, shard: shard) }
                    self.doc = doc
                    self.slot = slot
                    self.writer.write(joined)
                    self.writer.flush()
                }
            }
        default:
            break
        }
    }

    private static let stateKey = Array(#""state":"#.utf8)
    private static let docKey = Array(#""doc":""#.utf8)

    /// The bytes after `"state":` up to the message's closing brace.
    static func state(in buffer: ByteBuffer) -> ByteBuffer? {
        guard let at = find(stateKey, in: buffer) else { return nil }
        let start = at + stateKey.count
        let length = buffer.readableBytes - start - 1
        guard length > 0 else { return nil }
        return buffer.getSlice(at: buffer.readerIndex + start, length: length)
    }

    static func doc(in buffer: ByteBuffer) -> String? {
        guard let at = find(docKey, in: buffer) else { return nil }
        let view = buffer.readableBytesView
        let start = view.startIndex + at + docKey.count
        guard let end = view[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return String(decoding: view[start..<end], as: UTF8.self)
    }

    private static func find(_ needle: [UInt8], in buffer: ByteBuffer) -> Int? {
        buffer.withUnsafeReadableBytes { raw -> Int? in
            guard raw.count >= needle.count else { return nil }
            var i = 0
            while i <= raw.count - needle.count {
                if raw[i] == needle[0] {
                    var j = 1
                    while j < needle.count && raw[i + j] == needle[j] { j += 1 }
                    if j == needle.count { return i }
                }
                i += 1
            }
            return nil
        }
    }
}

extension BareDoc {
    /// A join answered after its connection closed: leave again (on the doc's loop).
    func leaveOnLoop(slot: Int, shard: BareShard) {
        shard.loop.execute { self.leave(slot: slot) }
    }
}

// What both bare servers (presence and sync) do the same way.

/// The shard of `doc` among `count`: FNV-1a, stable across runs (unlike `hashValue`).
func bareShardIndex(of doc: String, count: Int) -> Int {
    var h: UInt64 = 14_695_981_039_346_656_037
    for b in doc.utf8 { h = (h ^ UInt64(b)) &* 1_099_511_628_211 }
    return Int(h % UInt64(count))
}

/// A session id as long as Tandem's (`BareShards.sessionIDLength`), from a counter.
func bareSessionID(_ counter: UInt64) -> String {
    let number = String(counter)
    return "s" + String(repeating: "0", count: max(0, BareShards.sessionIDLength - 1 - number.utf8.count)) + number
}

/// A frame other than text: a ping is answered with its pong, a close with a close if `startClose` says this
/// is the first (the channel closes when it is written), anything else ignored. (`startClose` marks the
/// handler closing before the write, which may call back into it.)
func answerBareControlFrame(_ frame: WebSocketFrame, context: ChannelHandlerContext, startClose: () -> Bool) {
    switch frame.opcode {
    case .ping:
        context.writeAndFlush(NIOAny(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
    case .connectionClose:
        guard startClose() else { return }
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: .normalClosure)
        let channel = context.channel
        context.writeAndFlush(NIOAny(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in channel.close(promise: nil) }
    default:
        break
    }
}
