import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import TandemCore
import TandemRedis
@testable import TandemServer
import Testing

/// The connection layer without sockets or Redis: a real `ClientConnection` on an `EmbeddedChannel`
/// (whose `EmbeddedEventLoop` is the clock for scheduled work: pings, the close grace), with the real
/// frame encoder, and a real `DocShard` on the same loop whose Redis clients are never started (so Redis
/// is simply unreachable). What a client would read is decoded from the bytes the channel wrote.
@Suite struct ConnectionLayerTests {
    /// One server-sent frame, decoded from the channel's outbound bytes.
    struct Frame: Equatable {
        var opcode: UInt8
        var payload: [UInt8]

        var text: String { String(decoding: payload, as: UTF8.self) }
        /// A close frame's code.
        var closeCode: UInt16? { opcode == 0x8 && payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil }
        var closeText: String { String(decoding: payload.dropFirst(2), as: UTF8.self) }
    }

    /// A client's end: a real `ClientConnection` on an embedded channel, and what it was sent.
    final class Client {
        let channel: EmbeddedChannel
        let connection: ClientConnection
        private let loop: EmbeddedEventLoop
        private var pending: [UInt8] = []

        init(id: UInt64, user: String, loop: EmbeddedEventLoop, dependencies: ConnectionDependencies) throws {
            self.loop = loop
            channel = EmbeddedChannel(loop: loop)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()  // active, as a client socket
            let preframed = PreframedWriter()
            try channel.pipeline.syncOperations.addHandler(preframed, position: .first)
            try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
            connection = ClientConnection(
                id: id, sessionID: "s\(id)",
                identity: Identity(user: user, name: user, access: DocAccess(grants: [(pattern: "*", role: .editor)])),
                resumed: false, channel: channel, dependencies: dependencies, preframed: preframed)
            connection.start()
            loop.run()
        }

        /// Every frame written since the last call (the flush the connection schedules is run first).
        func frames() throws -> [Frame] {
            loop.run()
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
                pending += buffer.readableBytesView
            }
            return Self.takeFrames(from: &pending)
        }

        /// The whole frames at the front of `pending`, taken off it (a partial frame stays).
        static func takeFrames(from pending: inout [UInt8]) -> [Frame] {
            var frames: [Frame] = []
            while pending.count >= 2 {
                var length = Int(pending[1] & 0x7F)
                var header = 2
                if length == 126 {
                    guard pending.count >= 4 else { break }
                    length = Int(pending[2]) << 8 | Int(pending[3])
                    header = 4
                } else if length == 127 {
                    guard pending.count >= 10 else { break }
                    length = pending[2..<10].reduce(0) { $0 << 8 | Int($1) }
                    header = 10
                }
                guard pending.count >= header + length else { break }
                frames.append(Frame(opcode: pending[0] & 0x0F, payload: Array(pending[header..<header + length])))
                pending.removeFirst(header + length)
            }
            return frames
        }

        func receive(_ text: String) {
            receiveWithoutRunning(text)
            loop.run()
        }

        /// Hands the connection a message without running the loop's tasks: what the shard does at once
        /// (on this same loop) has happened, what it hands over with a task has not.
        func receiveWithoutRunning(_ text: String) {
            var buffer = channel.allocator.buffer(capacity: text.utf8.count)
            buffer.writeString(text)
            connection.receivedText(buffer)
            connection.readComplete()  // what the channel handler does at the end of a read burst
        }

        func ping(_ text: String) {
            var buffer = channel.allocator.buffer(capacity: text.utf8.count)
            buffer.writeString(text)
            connection.receivedPing(buffer)
        }
    }

    /// Connections and a shard on one embedded loop; Redis never started (unreachable).
    final class Fixture {
        let loop = EmbeddedEventLoop()
        let shards: DocShards
        let metrics: TandemMetrics
        let dependencies: ConnectionDependencies
        /// The first client (made with the fixture).
        let client: Client
        /// Every client, closed when the fixture goes.
        private var clients: [Client] = []
        var channel: EmbeddedChannel { client.channel }
        var connection: ClientConnection { client.connection }

        /// - Parameter peerLoops: other loops the shard is told of (connections there hand it presence as
        ///   a node's other loops do).
        init(peerLoops: [EventLoop] = [], configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
            var config = ServerConfiguration(nodeID: "test-node", redisURL: "redis://127.0.0.1:1")
            configure(&config)
            let metrics = TandemMetrics(nodeID: config.nodeID)
            self.metrics = metrics
            let logger = Logger(label: "test")
            let clock = NodeClock()
            let shards = try OfflineShards(config: config, metrics: metrics, clock: clock, logger: logger, loop: loop, peerLoops: peerLoops).shards
            self.shards = shards
            dependencies = ConnectionDependencies(
                settings: .init(config), metrics: metrics, clock: clock, logger: logger, registry: SessionRegistry(),
                shard: { shards.shard(for: $0) }, schemaVersion: { _ in nil }, reconnectObserved: {})
            client = try Client(id: 1, user: "u1", loop: loop, dependencies: dependencies)
            clients = [client]
        }

        /// The loop's scheduled tasks (pings, ticks) hold the connections and shards, the channels hold the
        /// loop: without closing both, every fixture would outlive its test (LeakSanitizer reported them).
        deinit {
            for client in clients { _ = try? client.channel.finish(acceptAlreadyClosed: true) }
            try? loop.syncShutdownGracefully()
        }

        func addClient(id: UInt64, user: String) throws -> Client {
            let added = try Client(id: id, user: user, loop: loop, dependencies: dependencies)
            clients.append(added)
            return added
        }

        func frames() throws -> [Frame] { try client.frames() }
        func receive(_ text: String) { client.receive(text) }
        func ping(_ text: String) { client.ping(text) }
    }

    @Test func welcomeIsTheFirstFrame() throws {
        let fixture = try Fixture()
        let frames = try fixture.frames()
        #expect(frames.first?.opcode == 0x1)
        #expect(frames.first?.text.contains(#""t":"welcome""#) == true)
    }

    @Test func everyServerCloseHasOneCodeLabelAndText() {
        // The table is total and its codes are the documented ones (docs/protocol.md).
        let codes = Dictionary(uniqueKeysWithValues: ServerClose.allCases.map { ($0, $0.code) })
        #expect(codes[.messageFlood] == .policyViolation)
        #expect(codes[.badFrames] == .policyViolation)
        #expect(codes[.binaryFrame] == .unacceptableData)
        #expect(codes[.pingTimeout] == .goingAway)
        #expect(codes[.shutdown] == .goingAway)
        #expect(codes[.slowConsumer] == .unknown(1013))
        #expect(codes[.resumedElsewhere] == .normalClosure)
        for close in ServerClose.allCases { #expect(!close.text.isEmpty) }
    }

    @Test func binaryFrameClosesWith1003AndTheSocketAfterTheGrace() throws {
        let fixture = try Fixture()
        _ = try fixture.frames()
        fixture.connection.receivedBinary()
        let written = try fixture.frames()
        let close = try #require(written.last)
        #expect(close.closeCode == 1003)
        #expect(close.closeText == ServerClose.binaryFrame.text)
        let closing = fixture.connection.isClosing
        #expect(closing)
        // The client does not answer: the socket is dropped once the close grace has passed, not before.
        fixture.loop.advanceTime(by: ClientConnection.closeHandshakeGrace - .milliseconds(1))
        let activeBefore = fixture.channel.isActive
        fixture.loop.advanceTime(by: .milliseconds(1))
        let activeAfter = fixture.channel.isActive
        #expect(activeBefore)
        #expect(!activeAfter)
    }

    @Test func twoMissedPingsCloseWith1001() throws {
        let fixture = try Fixture { $0.pingIntervalMs = 1_000 }
        _ = try fixture.frames()
        fixture.loop.advanceTime(by: .seconds(2))
        #expect(try fixture.frames().map(\.opcode) == [0x9, 0x9])
        let closingEarly = fixture.connection.isClosing
        #expect(!closingEarly)
        fixture.loop.advanceTime(by: .seconds(1))
        let written = try fixture.frames()
        let close = try #require(written.last)
        #expect(close.closeCode == 1001)
        #expect(close.closeText == "ping timeout")
    }

    @Test func anyFrameFromTheClientResetsThePingCount() throws {
        let fixture = try Fixture { $0.pingIntervalMs = 1_000 }
        for _ in 0..<5 {
            fixture.loop.advanceTime(by: .seconds(2))
            fixture.connection.receivedPong()
        }
        let closing = fixture.connection.isClosing
        #expect(!closing)
    }

    @Test func pingsArrivingWhileAPongIsWrittenAreAnsweredOnceForTheLatest() throws {
        let fixture = try Fixture()
        _ = try fixture.frames()
        // The first pong's write completes at the flush (next loop turn); b and c arrive before it.
        fixture.ping("a")
        fixture.ping("b")
        fixture.ping("c")
        let pongs = try fixture.frames().filter { $0.opcode == 0xA }
        #expect(pongs.map(\.text) == ["a", "c"])
    }

    @Test func aJoinBeyondMaxDocsPerConnectionIsRefused() throws {
        let fixture = try Fixture { $0.maxDocsPerConnection = 1 }
        _ = try fixture.frames()
        fixture.receive(#"{"t":"join","doc":"d1"}"#)
        fixture.receive(#"{"t":"join","doc":"d2"}"#)
        let errors = try fixture.frames().filter { $0.text.contains(#""t":"error""#) }
        #expect(errors.count == 1)
        #expect(errors.first?.text.contains(#""code":"too_many_docs""#) == true)
        #expect(errors.first?.text.contains(#""doc":"d2""#) == true)
    }

    @Test func presenceBeforeJoiningIsNotJoined() throws {
        let fixture = try Fixture()
        _ = try fixture.frames()
        fixture.receive(#"{"t":"presence","doc":"d1","state":{}}"#)
        let written = try fixture.frames()
        let error = try #require(written.first)
        #expect(error.text.contains(#""code":"not_joined""#))
    }

    @Test func aJoinIsAnsweredFromLocalStateWhileRedisIsUnreachable() throws {
        let fixture = try Fixture()
        _ = try fixture.frames()
        fixture.receive(#"{"t":"join","doc":"d1","state":{"x":1}}"#)
        // The shard's read of the doc fails at once (Redis not connected): `joined` lists this session.
        let written = try fixture.frames()
        let joined = try #require(written.first { $0.text.contains(#""t":"joined""#) })
        #expect(joined.text.contains(#""sid":"s1""#))
    }

    @Test func tooLargeMessagesAreRefusedWithTheirDoc() throws {
        let fixture = try Fixture { $0.limits.maxMessageBytes = 64 }
        _ = try fixture.frames()
        fixture.receive(#"{"t":"presence","doc":"d1","state":{"padding":"\#(String(repeating: "x", count: 80))"}}"#)
        let written = try fixture.frames()
        let error = try #require(written.first)
        #expect(error.text.contains(#""code":"too_large""#))
        #expect(error.text.contains(#""doc":"d1""#))
    }

    @Test func aTicksDeltaReachesEveryMemberOnceEncodedOnce() throws {
        let fixture = try Fixture { $0.tickMs = 50 }
        let alice = fixture.client
        let bob = try fixture.addClient(id: 2, user: "u2")
        fixture.shards.all[0].start()
        fixture.loop.run()
        alice.receive(#"{"t":"join","doc":"d1"}"#)
        bob.receive(#"{"t":"join","doc":"d1"}"#)
        _ = try alice.frames()
        _ = try bob.frames()
        alice.receive(#"{"t":"presence","doc":"d1","state":{"cursor":7}}"#)
        // Nothing before the tick: deltas are per tick, not per update.
        let early = try bob.frames()
        #expect(early.isEmpty)
        fixture.loop.advanceTime(by: .milliseconds(50))
        let toBob = try bob.frames().filter { $0.text.contains(#""updated":["#) }
        let toAlice = try alice.frames().filter { $0.text.contains(#""updated":["#) }
        #expect(toBob.count == 1)
        #expect(toBob.first?.text.contains(#""cursor":7"#) == true)
        // The same bytes to both (the frame is encoded once and shared).
        #expect(toBob == toAlice)
    }

    @Test func updatesBetweenTwoTicksReachEachMemberAsOneDeltaWithTheLatestStates() throws {
        let fixture = try Fixture {
            $0.tickMs = 50
            $0.presenceRate = 1_000
            $0.presenceBurst = 1_000
        }
        let alice = fixture.client
        let bob = try fixture.addClient(id: 2, user: "u2")
        let carol = try fixture.addClient(id: 3, user: "u3")
        fixture.shards.all[0].start()
        for client in [alice, bob, carol] { client.receive(#"{"t":"join","doc":"d1"}"#) }
        fixture.loop.advanceTime(by: .milliseconds(50))
        _ = try bob.frames()
        for round in 1...5 {
            for seq in 1...10 {
                alice.receive(#"{"t":"presence","doc":"d1","state":{"a":\#(round * 100 + seq)}}"#)
                carol.receive(#"{"t":"presence","doc":"d1","state":{"c":\#(round * 100 + seq)}}"#)
            }
            fixture.loop.advanceTime(by: .milliseconds(50))
            let deltas = try bob.frames().filter { $0.text.contains(#""updated":["#) }
            #expect(deltas.count == 1, "round \(round): \(deltas.count) deltas for 20 updates in one tick")
            #expect(deltas.first?.text.contains(#""a":\#(round * 100 + 10)"#) == true)
            #expect(deltas.first?.text.contains(#""c":\#(round * 100 + 10)"#) == true)
        }
    }

    /// The value of one metric line of the exposition (`name{labels}`), 0 if absent.
    func metric(_ fixture: Fixture, _ series: String) -> Double { fixture.metrics.value(of: series) }

    /// Issue 14: the presence updates of one read burst go to the shard in one hop when the burst ends,
    /// not one hop each, and a message that is not presence first hands over what is batched, so the shard
    /// still sees the connection's messages in the order they were sent.
    @Test func presenceOfAReadBurstReachesTheShardAtItsEndInOrderWithOtherMessages() throws {
        let fixture = try Fixture { $0.tickMs = 50 }
        let alice = fixture.client
        let bob = try fixture.addClient(id: 2, user: "u2")
        fixture.shards.all[0].start()
        alice.receive(#"{"t":"join","doc":"d1"}"#)
        bob.receive(#"{"t":"join","doc":"d1"}"#)
        fixture.loop.advanceTime(by: .milliseconds(50))
        _ = try bob.frames()
        let accepted = #"tandem_presence_updates_total{result="accepted"}"#
        let notJoined = #"tandem_presence_updates_total{result="not_joined"}"#
        let acceptedBefore = metric(fixture, accepted)

        // Two frames of one burst: nothing reaches the shard until the burst ends.
        for cursor in [1, 2] {
            var buffer = alice.channel.allocator.buffer(capacity: 64)
            buffer.writeString(#"{"t":"presence","doc":"d1","state":{"cursor":\#(cursor)}}"#)
            alice.connection.receivedText(buffer)
        }
        fixture.loop.advanceTime(by: .milliseconds(50))
        #expect(metric(fixture, accepted) == acceptedBefore)
        #expect(try bob.frames().filter { $0.text.contains(#""updated":["#) }.isEmpty)
        alice.connection.readComplete()
        fixture.loop.advanceTime(by: .milliseconds(50))
        #expect(metric(fixture, accepted) == acceptedBefore + 2)
        let delta = try bob.frames().filter { $0.text.contains(#""updated":["#) }
        #expect(delta.count == 1 && delta.first?.text.contains(#""cursor":2"#) == true)

        // An update and then a leave in one burst: the update is applied first, not refused as not joined.
        var update = alice.channel.allocator.buffer(capacity: 64)
        update.writeString(#"{"t":"presence","doc":"d1","state":{"cursor":3}}"#)
        alice.connection.receivedText(update)
        var leave = alice.channel.allocator.buffer(capacity: 64)
        leave.writeString(#"{"t":"leave","doc":"d1"}"#)
        alice.connection.receivedText(leave)
        alice.connection.readComplete()
        fixture.loop.advanceTime(by: .milliseconds(50))  // (outcomes are counted at the tick)
        #expect(metric(fixture, accepted) == acceptedBefore + 3)
        #expect(metric(fixture, notJoined) == 0)
    }

    /// `deliverPresence` remembers the doc it last found joined (issue 14: no hash of the doc id per member
    /// per delta); any change of the connection's docs forgets it, so a delta of a doc the connection has
    /// left, or not joined, is never written, and one of a doc joined again is.
    @Test func aDeltaReachesAConnectionOnlyWhileItIsInTheDoc() throws {
        let fixture = try Fixture()
        let client = fixture.client
        let entry = PresenceEntry(sid: "s9", user: "u9", name: "u9", role: .editor, node: "n", version: 1, state: .empty)
        func delivered(_ doc: String) -> Bool {
            let delta = PresenceDelta(doc: doc, joined: [entry], updated: [], left: [])
            let written = client.connection.deliverPresence(delta, buffer: ServerFrame.text(delta.encoded, allocator: ByteBufferAllocator()))
            client.connection.flushPresence()
            return written
        }
        #expect(!delivered("d1"))
        client.receive(#"{"t":"join","doc":"d1"}"#)
        #expect(delivered("d1") && delivered("d1"))
        #expect(!delivered("d2"))
        client.receive(#"{"t":"leave","doc":"d1"}"#)
        #expect(!delivered("d1"))
        client.receive(#"{"t":"join","doc":"d1"}"#)
        #expect(delivered("d1"))
        client.receive(#"{"t":"join","doc":"d2"}"#)
        #expect(delivered("d2") && delivered("d1"))
        client.receive(#"{"t":"leave","doc":"d2"}"#)
        #expect(!delivered("d2") && delivered("d1"))
    }

    /// A shard writes presence deltas to its members on its own loop at once but hands `joined` over with
    /// a task (it must follow catch-up chunks already queued), so on the shard's loop a delta can come to
    /// the connection before the `joined` it follows. Written first, the client applied it and then
    /// replaced its list with `joined`'s, built before the change, and missed a session until it changed
    /// again (a flaky browser test: `b never saw ada`). The delta waits and reaches the socket right after
    /// `joined`: for a first join, a re-join, two joins in flight (the first one's answer does not release
    /// it), and a socket that turns writable meanwhile (the slow-consumer drain does not either).
    @Test(arguments: JoinRace.allCases)
    func aDeltaDeliveredBeforeItsJoinedReachesTheSocketAfterIt(_ race: JoinRace) throws {
        let fixture = try Fixture {
            $0.presenceRate = 1_000
            $0.presenceBurst = 1_000
        }
        let bob = try fixture.addClient(id: 2, user: "u2")
        bob.receive(#"{"t":"join","doc":"d1"}"#)  // the doc is loaded: the next join is answered at once
        let alice = fixture.client
        if race == .reJoin { alice.receive(#"{"t":"join","doc":"d1"}"#) }
        _ = try alice.frames()
        var version: UInt64 = 0
        func deliverAdaDirectly() {  // as `DocShard.deliver` does, on the shard's loop
            version += 1
            let ada = PresenceEntry(sid: "s9", user: "u9", name: "ada", role: .editor, node: "n2", version: version, state: .empty)
            let delta = PresenceDelta(doc: "d1", joined: version == 1 ? [ada] : [], updated: version == 1 ? [] : [ada], left: [])
            alice.connection.deliverPresence(delta, buffer: ServerFrame.text(delta.encoded, allocator: ByteBufferAllocator()))
            alice.connection.flushPresence()
        }
        // The join is answered (`addMember`), its `joined` task queued, not run.
        alice.receiveWithoutRunning(#"{"t":"join","doc":"d1"}"#)
        switch race {
        case .firstJoin, .reJoin:
            deliverAdaDirectly()
        case .twoJoinsInFlight:
            fixture.loop.execute { deliverAdaDirectly() }  // runs between the two answers
            alice.receiveWithoutRunning(#"{"t":"join","doc":"d1"}"#)
        case .writableMeanwhile:
            deliverAdaDirectly()
            alice.connection.writabilityChanged(isWritable: true)
        }
        let texts = try alice.frames().map(\.text).filter { $0.contains(#""doc":"d1""#) }
        let joined = try #require(texts.lastIndex { $0.contains(#""t":"joined""#) }, "no joined in \(texts)")
        let delta = try #require(texts.firstIndex { $0.contains(#""name":"ada""#) && !$0.contains(#""t":"joined""#) }, "no delta in \(texts)")
        #expect(joined < delta, "the delta went before the last joined: \(texts)")
        #expect(texts.filter { $0.contains(#""t":"joined""#) }.count == (race == .twoJoinsInFlight ? 2 : 1), "\(texts)")
        // Once `joined` went, deltas are written at once again.
        deliverAdaDirectly()
        let next = try alice.frames().map(\.text)
        #expect(next.count == 1 && next.first?.contains(#""v":\#(version)}"#) == true, "\(next)")
    }

    enum JoinRace: CaseIterable, Sendable { case firstJoin, reJoin, twoJoinsInFlight, writableMeanwhile }
}
