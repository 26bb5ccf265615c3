import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Sync under overload (issue 8), end to end over real sockets and a real Redis.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3))) struct SyncOverloadTests {
    /// Every push gets exactly one answer: under overload — admission refusing most pushes, Redis frozen
    /// with batches in it, two nodes racing for the same records — each push gets one `result` or one
    /// error, never none and never two. (The pipeline's model test checks the same in the pure state
    /// machine; this checks the shell around it: the shard, the outbox, the connections' loops.)
    @Test func everyPushGetsExactlyOneAnswerUnderOverload() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) {
            $0.maxPushWaitMs = 1
            $0.maxQueuedPushes = 8
        }
        let docs = ["answers:a", "answers:b"]
        var clients: [SyncClient] = []
        for k in 0..<6 {
            let client = try await cluster.client("u\(k)", node: k % 2)
            for doc in docs { try await client.join(doc) }
            clients.append(client)
        }
        let perPhase = 60
        func burst(_ ids: ClosedRange<Int>) {
            for id in ids {
                for (k, client) in clients.enumerated() {
                    let doc = docs[id % 2]
                    client.push(doc, id: id, ops: #"{"own\#(k)":["put",{"n":\#(id)}],"shared":["patch",{"u\#(k)":["put",\#(id)]}]}"#)
                }
            }
        }
        // Flowing, then with Redis frozen (batches stuck in it, the queue bound reached), then flowing again.
        func refusals() async throws -> Double {
            var total = 0.0
            for node in cluster.nodes {
                for reason in ["wait", "queue_full", "delayed"] {
                    total += try await node.metric(#"tandem_sync_overload_refusals_total{reason="\#(reason)"}"#)
                }
            }
            return total
        }
        burst(1...perPhase)
        cluster.redis.pause()
        let refusedBefore = try await refusals()
        burst((perPhase + 1)...(2 * perPhase))
        try await waitUntil("pushes refused while Redis is frozen") { try await refusals() > refusedBefore }
        cluster.redis.resume()
        burst((2 * perPhase + 1)...(3 * perPhase))
        let ids = 1...(3 * perPhase)

        // Every push answered...
        for client in clients {
            try await waitUntil("\(client.name): every push answered", timeout: .seconds(60)) {
                let counts = answerCounts(client)
                return ids.allSatisfy { counts[key(docs[$0 % 2], $0)] != nil }
            }
        }
        // ...and, once a last push behind them all is answered too, none of them twice.
        for client in clients {
            for doc in docs {
                let last = try await client.pushUntilAnswered(doc, id: .number(10_000), ops: json(#"{"last":["put",{}]}"#))
                #expect(last.string("t") == "result", "\(last)")
            }
        }
        var outcomes: [String: Int] = [:]
        for client in clients {
            let counts = answerCounts(client)
            for id in ids {
                let answers = counts[key(docs[id % 2], id)] ?? []
                #expect(answers.count == 1, "\(client.name) push \(id) in \(docs[id % 2]): \(answers)")
                for answer in answers { outcomes[answer, default: 0] += 1 }
            }
        }
        // The scenario did what it is meant to: some pushes committed, some refused as overload.
        #expect((outcomes["commit"] ?? 0) + (outcomes["rebase"] ?? 0) > 0, "\(outcomes)")
        #expect((outcomes["unavailable"] ?? 0) > 0, "\(outcomes)")
        try await cluster.waitConverged(docs[0])
        try await cluster.waitConverged(docs[1])
        #expect(SyncRedis.pushesCommittedTwice(cluster.redis, docs[0]) == [])
        #expect(SyncRedis.pushesCommittedTwice(cluster.redis, docs[1]) == [])
        await cluster.finish()
    }

    /// A push refused for overload is answered from its envelope (type, doc, id): its ops are never
    /// parsed. Shown with ops that are not JSON: while the doc's queue is full they get `unavailable`
    /// like any push; while it flows they get `bad_message` — so only an admitted push's ops are read.
    @Test func aRefusedPushsOpsAreNeverParsed() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) {
            $0.maxPushWaitMs = 60_000  // only the queue bound refuses here, whatever the timing
            $0.maxLoopLagMs = 60_000
            $0.maxQueuedPushes = 2
            $0.maxBatchesInFlight = 1  // (push 2 alone in Redis, 3 and 4 queued behind it)
        }
        let doc = "overload:unparsed"
        let client = try await cluster.client("raw")
        try await client.join(doc)
        func pushMalformed(_ id: Int) {
            client.socket.sendRaw(#"{"t":"push","doc":"\#(doc)","id":\#(id),"base":0,"ops":{"r":["put",{"a":tru}]}}"#)
        }
        pushMalformed(1)
        #expect(try await client.answer(doc, id: .number(1)).string("code") == "bad_message")

        // Redis frozen: push 2's batch is stuck in it, 3 and 4 fill the queue, so 5 is refused as it arrives.
        cluster.redis.pause()
        for id in 2...4 { client.push(doc, id: id, ops: #"{"q\#(id)":["put",{}]}"#) }
        pushMalformed(5)
        let refused = try await client.answer(doc, id: .number(5))
        let refusedAt = ContinuousClock.now
        cluster.redis.resume()
        #expect(refused.string("code") == "unavailable", "\(refused)")
        #expect(refused.string("message")?.contains("queued") == true, "\(refused)")
        #expect(refused["retryAfterMs"] != nil, "\(refused)")
        for id in 2...4 { #expect(try await client.answer(doc, id: .number(id)).string("t") == "result") }
        #expect(try await cluster.nodes[0].metric(#"tandem_sync_overload_refusals_total{reason="queue_full"}"#) == 1)

        // Flowing again, once the hint given to the connection has passed (before it, the connection
        // refuses the doc's pushes itself: `aPushBeforeItsHintIsRefusedAtTheConnection`): the same push is
        // parsed, and refused for what it is.
        try await waitOutHint(refused, since: refusedAt)
        pushMalformed(6)
        let invalid = try await client.answer(doc, id: .number(6))
        #expect(invalid.string("code") == "bad_message", "\(invalid)")
        #expect(invalid.string("message")?.contains("ops") == true, "\(invalid)")
        await cluster.finish()
    }

    /// A connection told to retry a doc's pushes later refuses the ones that arrive sooner itself: they
    /// never reach the doc (its refusal count does not move), and each is told the time left. Once the
    /// hint has passed, the doc decides again. (Redis frozen with a batch in it: the doc refuses every
    /// push as busy, with a hint that grows the longer the batch is late. The test pushes one push at a
    /// time, each right after the last one's answer, until one arrives before its hint passed — as soon
    /// as the hints are longer than the test client takes to answer, however slow the machine.)
    @Test func aPushBeforeItsHintIsRefusedAtTheConnection() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) {
            $0.maxPushWaitMs = 1  // anything behind the batch in Redis is refused as busy
            $0.maxLoopLagMs = 60_000
            $0.maxBatchesInFlight = 1
        }
        let doc = "overload:early"
        let client = try await cluster.client("early")
        try await client.join(doc)
        let node = cluster.nodes[0]
        let waitRefusals = #"tandem_sync_overload_refusals_total{reason="wait"}"#
        cluster.redis.pause()
        client.push(doc, id: 1, ops: #"{"stuck":["put",{}]}"#)  // admitted (nothing ahead), then stuck in Redis
        try await waitUntil("push 1 in Redis") { try await node.metric("tandem_sync_batch_size_count") >= 1 }
        var earlyAnswer: [String: JSONValue]?
        var lastHint: UInt64 = 0
        var nextID = 2
        var byDocBefore = 0.0
        try await waitUntil("a push refused at the connection (last hint \(lastHint) ms)", timeout: .seconds(60), poll: .milliseconds(50)) {
            byDocBefore = try await node.metric(waitRefusals)
            let id = nextID
            nextID += 1
            client.push(doc, id: id, ops: #"{"r":["put",{}]}"#)
            let answer = try await client.answer(doc, id: id)
            #expect(answer.string("code") == "unavailable", "\(answer)")
            if answer.string("message")?.contains("told to retry") == true {
                earlyAnswer = answer
                return true
            }
            lastHint = answer.clock("retryAfterMs") ?? 0  // the doc refused it: its hint starts a new wait
            return false
        }
        let early = try #require(earlyAnswer)
        // Not seen by the doc, and told the time left of the hint before it.
        #expect(try await node.metric(waitRefusals) == byDocBefore)
        let left = try #require(early.clock("retryAfterMs"), "\(early)")
        #expect(left >= 1 && left <= lastHint, "time left \(left) ms of \(lastHint) ms")
        #expect(try await node.metric(#"tandem_sync_overload_refusals_total{reason="early"}"#) >= 1)
        let earlyAt = ContinuousClock.now

        // Redis back, the hint passed: the doc takes the connection's pushes again.
        cluster.redis.resume()
        #expect(try await client.answer(doc, id: 1).string("t") == "result")
        try await waitOutHint(early, since: earlyAt)
        let after = try await client.pushUntilAnswered(doc, id: .number(1_000), ops: json(#"{"after":["put",{}]}"#))
        #expect(after.string("t") == "result", "\(after)")
        await cluster.finish()
    }

    /// Pushes a connection had already handed to its doc when the doc refused one of them (the rest of the
    /// read burst that carried it: sent together, in one write, so they are read before the connection's
    /// loop runs the refusal's answer) are refused at the doc within the hint it gave, without admission:
    /// one refusal by the doc (`wait`/`delayed`), the rest `in_flight`, each told the time left. Without
    /// that every one of them was admitted and refused again, each counted in the backlog that lengthens
    /// everyone's hints. Once the hint has passed the doc decides the connection's pushes again.
    @Test func pushesHandedOnBeforeTheConnectionHeardOfARefusalAreRefusedAtTheDoc() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) {
            $0.maxPushWaitMs = 1  // anything behind the batch in Redis is refused as busy
            $0.maxLoopLagMs = 60_000
            $0.maxBatchesInFlight = 1
        }
        let node = cluster.nodes[0]
        let doc = "overload:inflight"
        let holder = try await cluster.client("holder")
        try await holder.join(doc)
        let socket = try RawSocket(port: node.port)
        #expect(try await socket.upgrade(query: "user=burst&name=burst") == 101)
        try socket.write(RawSocket.text(#"{"t":"join","doc":"\#(doc)"}"#))
        try await waitUntil("the raw client's catch-up") { socket.frames().contains { Self.text($0.payload).contains(#""more":false"#) } }

        func refusals(_ reasons: [String]) async throws -> Double {
            var total = 0.0
            for reason in reasons { total += try await node.metric(#"tandem_sync_overload_refusals_total{reason="\#(reason)"}"#) }
            return total
        }
        let byDoc = ["wait", "delayed", "queue_full", "loop_lag"]
        cluster.redis.pause()
        holder.push(doc, id: 1, ops: #"{"stuck":["put",{}]}"#)  // admitted (nothing ahead), then stuck in Redis
        try await waitUntil("push 1 in Redis") { try await node.metric("tandem_sync_batch_size_count") >= 1 }
        let byDocBefore = try await refusals(byDoc)
        let inFlightBefore = try await refusals(["in_flight"])
        let earlyBefore = try await refusals(["early"])
        let ids = 2...21
        try socket.write(ids.flatMap { RawSocket.text(#"{"t":"push","doc":"\#(doc)","id":\#($0),"base":0,"ops":{"b\#($0)":["put",{}]}}"#) })
        var answers: [Int: [String: JSONValue]] = [:]
        try await waitUntil("every push of the burst answered: \(answers.keys.sorted())", timeout: .seconds(30)) {
            for frame in socket.frames() {
                guard case .object(let m)? = try? JSONParser.parse(Self.text(frame.payload)), m["t"]?.stringValue == "error",
                    let id = m["id"]?.intValue
                else { continue }
                answers[id] = m
            }
            return ids.allSatisfy { answers[$0] != nil }
        }
        // One refusal by the doc's admission; the other 19 within its hint, at the doc.
        #expect(try await refusals(byDoc) - byDocBefore == 1)
        #expect(try await refusals(["in_flight"]) - inFlightBefore == Double(ids.count - 1))
        #expect(try await refusals(["early"]) == earlyBefore)
        let first = try #require(ids.lazy.compactMap { answers[$0] }.first { $0.string("message")?.contains("told to retry") != true })
        let hint = try #require(first.clock("retryAfterMs"), "\(first)")
        for id in ids {
            let answer = try #require(answers[id])
            #expect(answer.string("code") == "unavailable", "\(answer)")
            let left = try #require(answer.clock("retryAfterMs"), "\(answer)")
            #expect(left >= 1 && left <= hint, "push \(id): \(left) ms of \(hint)")
        }
        let refusedAt = ContinuousClock.now

        // Redis back and the hint passed: the doc takes the connection's pushes again.
        cluster.redis.resume()
        #expect(try await holder.answer(doc, id: 1).string("t") == "result")
        try await waitUntil("the hint of \(hint) ms passed", timeout: .seconds(40)) { ContinuousClock.now - refusedAt > .milliseconds(Int64(hint)) }
        var result: [String: JSONValue]?
        var nextID = 100
        try await waitUntil("a push after the hint committed", timeout: .seconds(30), poll: .milliseconds(100)) {
            let id = nextID
            nextID += 1
            try socket.write(RawSocket.text(#"{"t":"push","doc":"\#(doc)","id":\#(id),"base":0,"ops":{"after":["put",{}]}}"#))
            var answer: [String: JSONValue]?
            try await waitUntil("push \(id) answered") {
                for frame in socket.frames() {
                    guard case .object(let m)? = try? JSONParser.parse(Self.text(frame.payload)), m["id"]?.intValue == id,
                        m["t"]?.stringValue == "result" || m["t"]?.stringValue == "error"
                    else { continue }
                    answer = m
                }
                return answer != nil
            }
            if answer?.string("t") == "result" { result = answer }
            return result != nil
        }
        #expect(["commit", "rebase"].contains(result?.string("action")), "\(String(describing: result))")
        socket.close()
        await cluster.finish()
    }

    private static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// Waits (bounded) until the `retryAfterMs` of `refusal`, received at `since`, has passed.
    private func waitOutHint(_ refusal: [String: JSONValue], since: ContinuousClock.Instant) async throws {
        let hint = Duration.milliseconds(Int64(refusal.clock("retryAfterMs") ?? 0))
        try await waitUntil("the hint of \(refusal) passed", timeout: .seconds(40)) { ContinuousClock.now - since > hint }
    }

    private func key(_ doc: String, _ id: Int) -> String { "\(doc)#\(id)" }

    /// The answers (`result` action or error code) each push of `client` got, from the raw messages.
    private func answerCounts(_ client: SyncClient) -> [String: [String]] {
        var counts: [String: [String]] = [:]
        for text in client.socket.rawMessages {
            guard case .object(let m)? = try? JSONParser.parse(text), let doc = m["doc"]?.stringValue,
                let id = m["id"]?.intValue
            else { continue }
            switch m["t"]?.stringValue {
            case "result": counts[key(doc, id), default: []].append(m["action"]?.stringValue ?? "?")
            case "error": counts[key(doc, id), default: []].append(m["code"]?.stringValue ?? "?")
            default: break
            }
        }
        return counts
    }

    /// A shard whose event loop runs behind (`--max-loop-lag-ms`, here 1 ms: any burst of work passes it)
    /// refuses pushes at once, `unavailable` with a retry hint, before their doc's admission — and counts
    /// them (reason `loop_lag`) and the probes' lag.
    @Test func aLaggingLoopRefusesPushesWithAHint() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) { $0.maxLoopLagMs = 1 }
        let node = cluster.nodes[0]
        let doc = "overload:lag"
        var clients: [SyncClient] = []
        for k in 0..<4 {
            let client = try await cluster.client("l\(k)")
            try await client.join(doc)
            clients.append(client)
        }
        let metric = #"tandem_sync_overload_refusals_total{reason="loop_lag"}"#
        var nextID = 1
        var refusal: [String: JSONValue]?
        // Bursts of pushes keep the loops busy until a probe runs late enough.
        try await waitUntil("a push refused for loop lag", timeout: .seconds(60), poll: .milliseconds(50)) {
            for _ in 0..<100 {
                for (k, client) in clients.enumerated() {
                    client.push(doc, id: nextID, ops: #"{"r\#(k)":["put",{"n":\#(nextID)}]}"#)
                }
                nextID += 1
            }
            for client in clients {
                client.update()
                if let found = client.view(doc).pushErrors.values.first(where: { $0.string("message")?.contains("event loop") == true }) {
                    refusal = found
                }
            }
            return refusal != nil
        }
        let refused = try #require(refusal)
        #expect(refused.string("code") == "unavailable", "\(refused)")
        #expect(refused.string("doc") == doc)
        #expect(refused["id"] != nil)
        let hint = try #require(refused["retryAfterMs"]?.uint64Value, "\(refused)")
        #expect(hint >= 1 && hint <= 30_000)
        #expect(refused.string("message")?.contains("--max-loop-lag-ms") == true, "\(refused)")
        #expect(try await node.metric(metric) >= 1)
        #expect(try await node.metric("tandem_event_loop_lag_seconds_count") >= 1)
        // Nothing of a refused push is applied; the doc converges on what was committed.
        try await cluster.waitConverged(doc)
        for client in clients { cluster.expectRecordsEqualRedis(client, doc) }
        await cluster.finish()
    }
}
