import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Numbers a client (or a corrupted Redis key) controls never trap a node: every clock is range-checked
/// where it is parsed (a `bad_message` naming the field), push ids have a bounded size, and values read
/// back from Redis are checked before any arithmetic.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct HostileNumbersTests {
    static let tooBig = "9007199254740992"  // 2^53: the smallest clock a client must not send
    static let largest = "9007199254740991"  // 2^53 − 1: the largest one it may send

    /// The message from issue 7 that crashed a node, from a viewer-like client that merely joined.
    @Test func aSyncFromTheLargestUInt64IsABadMessageAndTheNodeKeepsServing() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "num-sync", stopWhenDone: true)
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        try await alice.join("n")
        alice.sendRaw(#"{"t":"push","doc":"n","id":1,"base":0,"ops":{"r":["put",{"a":1}]}}"#)
        #expect(JSON.string(try await alice.next("result", doc: "n"), at: "action") == "commit")

        alice.sendRaw(#"{"t":"sync","doc":"n","from":18446744073709551615}"#)
        let error = try await alice.next("error", doc: "n")
        #expect(JSON.string(error, at: "code") == "bad_message")
        #expect(JSON.string(error, at: "message")?.contains("\"from\"") == true, "names the field: \(error)")

        // The largest valid clock is past the head: one empty log chunk, nothing else.
        alice.sendRaw(#"{"t":"sync","doc":"n","from":\#(Self.largest),"limit":\#(Self.largest)}"#)
        let chunk = try await alice.next("log", doc: "n")
        #expect((JSON.array(chunk, at: "entries") ?? [1]).isEmpty)
        #expect(JSON.bool(chunk, at: "more") == false)
        #expect(JSON.int(chunk, at: "head") == 1)
        // And a sync just below the head still works as before.
        alice.sendRaw(#"{"t":"sync","doc":"n","from":0,"limit":10}"#)
        let log = try await alice.next("log", doc: "n")
        #expect((JSON.array(log, at: "entries") ?? []).count == 1)

        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        try await bob.join("n")
        #expect(try await node.get("/healthz").status == 200)
        await alice.close()
        await bob.close()
    }

    /// `since`, `base`, `from`, the ack `clock` and `limit`: 2^53 is refused naming the field, 2^53 − 1
    /// is accepted, and the connection stays usable throughout.
    @Test func everyClientClockIsRangeCheckedWhereItIsParsed() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "num-fields", stopWhenDone: true)
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        try await alice.join("f")
        let big = Self.tooBig
        let cases: [(field: String, message: String)] = [
            ("since", #"{"t":"join","doc":"f","since":\#(big)}"#),
            ("base", #"{"t":"push","doc":"f","id":7,"base":\#(big),"ops":{"r":["put",{}]}}"#),
            ("from", #"{"t":"sync","doc":"f","from":\#(big)}"#),
            ("limit", #"{"t":"sync","doc":"f","from":0,"limit":\#(big)}"#),
            ("clock", #"{"t":"ack","doc":"f","clock":\#(big)}"#),
            ("clock", #"{"t":"ack","doc":"f","clock":1e400}"#),
        ]
        for (field, message) in cases {
            let mark = alice.count
            alice.sendRaw(message)
            // (The presence tick of alice's own join may arrive in between: the answer is the first error.)
            let errors = { alice.messages(since: mark).filter { JSON.string($0, at: "t") == "error" } }
            try await waitUntil("an answer to \(message); \(alice.summary())") { !errors().isEmpty }
            let answer = errors()[0]
            #expect(JSON.string(answer, at: "code") == "bad_message", "\(message) → \(answer)")
            #expect(JSON.string(answer, at: "message")?.contains("\"\(field)\"") == true, "names \(field): \(answer)")
            #expect(JSON.string(answer, at: "doc") == "f")
            if field == "base" { #expect(JSON.int(answer, at: "id") == 7, "a refused push echoes its id") }
        }
        // The largest valid values are accepted (the ack has no answer: the pong after it shows it passed).
        let mark = alice.count
        alice.sendRaw(#"{"t":"ack","doc":"f","clock":\#(Self.largest)}"#)
        alice.sendRaw(#"{"t":"join","doc":"f","since":\#(Self.largest)}"#)
        try await alice.next("joined", doc: "f")
        alice.sendRaw(#"{"t":"ping"}"#)
        try await alice.next("pong")
        #expect(alice.errors("bad_message", since: mark).isEmpty, "\(alice.messages(since: mark))")
        #expect(!alice.isClosed)
        await alice.close()
    }

    /// A head clock no client could have been sent (a key corrupted by hand or by someone with Redis
    /// access) does not trap the node: the doc is not loaded, pushes are refused `unavailable`, and other
    /// docs work.
    @Test func aCorruptedHeadClockInRedisDoesNotTrapTheNode() async throws {
        let redis = try RedisServerProcess()
        _ = redis.command("SET", "tandem:{bad}:clock", "18446744073709551615")
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "num-redis", stopWhenDone: true)
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        let joined = try await alice.join("bad")
        #expect(JSON.int(joined, at: "clock") == nil, "no head clock for a doc that could not be loaded: \(joined)")
        alice.sendRaw(#"{"t":"push","doc":"bad","id":1,"base":0,"ops":{"r":["put",{"a":1}]}}"#)
        let refused = try await alice.next("error", doc: "bad", timeout: .seconds(20))
        #expect(JSON.string(refused, at: "code") == "unavailable")
        #expect(JSON.int(refused, at: "id") == 1)
        // Nothing was written to the corrupted doc, and the node still serves other docs.
        #expect(redis.command("EXISTS", "tandem:{bad}:log") == "0")
        try await alice.join("good")
        alice.sendRaw(#"{"t":"push","doc":"good","id":2,"base":0,"ops":{"r":["put",{"a":2}]}}"#)
        #expect(JSON.string(try await alice.next("result", doc: "good"), at: "action") == "commit")
        #expect(try await node.get("/healthz").status == 200)
        await alice.close()
    }

    /// Presence entries in Redis at and past the largest version (2^53 − 1): one past it is ignored as
    /// corrupt, and one at it, taken over by a resume, is corrupt too: the session starts again at version 1
    /// instead of trapping (see `aResumeNearTheLargestPresenceVersionIsSeenOnOtherNodes`).
    @Test func aCorruptedPresenceVersionInRedisDoesNotTrapAResume() async throws {
        let redis = try RedisServerProcess()
        let sid = "AAAAAAAAAAAAAAAAAAAAAA"
        let corrupt = "BBBBBBBBBBBBBBBBBBBBBB"
        let deadline = String(redis.nowMs + 600_000)
        _ = redis.command("ZADD", "tandem:{pv}:nodes", deadline, "ghost")
        _ = redis.command(
            "HSET", "tandem:{pv}:presence:ghost", sid,
            #"{"name":"alice","node":"ghost","role":"editor","sid":"\#(sid)","state":{"c":1},"user":"alice","v":9007199254740991}"#)
        _ = redis.command(
            "HSET", "tandem:{pv}:presence:ghost", corrupt,
            #"{"name":"carol","node":"ghost","role":"editor","sid":"\#(corrupt)","state":{"c":1},"user":"carol","v":18446744073709551615}"#)
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "num-pv", stopWhenDone: true)
        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        try await bob.join("pv")
        #expect(bob.members(of: "pv").contains(sid), "bob sees the ghost entry")
        #expect(!bob.members(of: "pv").contains(corrupt), "an entry past 2^53 − 1 is ignored as corrupt")
        let alice = try await TestClient.connect(node.url(user: "alice", query: "resume=\(sid)"), name: "alice")
        #expect(JSON.bool(alice.welcome, at: "resumed") == true)
        try await alice.join("pv")
        alice.presence("pv", ["c": 2])
        try await waitUntil("bob sees alice's new state") { (bob.state(of: sid, in: "pv")?["c"] as? Int) == 2 }
        #expect(try await node.get("/healthz").status == 200)
        await alice.close()
        await bob.close()
    }

    /// An entry in Redis at or just below the largest version (2^53 − 1), resumed on one node: continued
    /// from, it would pass 2^53 − 1 within a few updates (at once from 2^53 − 1, after two from 2^53 − 3),
    /// and the other nodes refuse such entries as corrupt, so the resumed session was invisible to everyone
    /// on them. Any stored version above `PresenceEntry.maxResumedVersion` (2^52) is treated as corrupt:
    /// the session starts again at version 1. One at the margin is continued.
    static let resumes: [(stored: UInt64, resumed: UInt64)] = [
        (PresenceEntry.maxVersion, 1),
        (PresenceEntry.maxVersion - 2, 1),
        (PresenceEntry.maxResumedVersion + 1, 1),
        (PresenceEntry.maxResumedVersion, PresenceEntry.maxResumedVersion + 1),
    ]

    @Test(arguments: Self.resumes)
    func aResumeNearTheLargestPresenceVersionIsSeenOnOtherNodes(stored: UInt64, resumed: UInt64) async throws {
        let redis = try RedisServerProcess()
        let sid = "AAAAAAAAAAAAAAAAAAAAAA"
        _ = redis.command("ZADD", "tandem:{pm}:nodes", String(redis.nowMs + 600_000), "ghost")
        _ = redis.command(
            "HSET", "tandem:{pm}:presence:ghost", sid,
            #"{"name":"alice","node":"ghost","role":"editor","sid":"\#(sid)","state":{"c":1},"user":"alice","v":\#(stored)}"#)
        let resumer = try await InProcessNode.start(redis: redis.url, nodeID: "num-pm-a", stopWhenDone: true)
        let other = try await InProcessNode.start(redis: redis.url, nodeID: "num-pm-b", stopWhenDone: true)
        let bob = try await TestClient.connect(other.url(user: "bob"), name: "bob")
        try await bob.join("pm")
        #expect((bob.state(of: sid, in: "pm")?["c"] as? Int) == 1, "bob sees the entry at \(stored): \(bob.summary())")
        let alice = try await TestClient.connect(resumer.url(user: "alice", query: "resume=\(sid)"), name: "alice")
        #expect(JSON.bool(alice.welcome, at: "resumed") == true)
        try await alice.join("pm", state: ["c": 2])
        try await waitUntil("bob, on the other node, sees alice's resumed state; \(bob.summary())") {
            (bob.state(of: sid, in: "pm")?["c"] as? Int) == 2
        }
        // One at a time, each seen before the next: every update is accepted (none coalesced away), so from
        // 2^53 − 3 the last would carry 2^53 had the resume continued from the stored version.
        for c in 3...5 {
            alice.presence("pm", ["c": c])
            try await waitUntil("bob sees alice's update c=\(c); \(bob.summary())", timeout: .seconds(20)) {
                (bob.state(of: sid, in: "pm")?["c"] as? Int) == c
            }
        }
        // What Redis holds for her on the resuming node: the resumed version, then one more per update.
        let key = "tandem:{pm}:presence:num-pm-a"
        try await waitUntil("alice's entry in Redis at version \(resumed + 3): \(redis.command("HGET", key, sid))") {
            redis.command("HGET", key, sid).hasSuffix(#""v":\#(resumed + 3)}"#)
        }
        #expect(try await resumer.get("/healthz").status == 200)
        await alice.close()
        await bob.close()
    }

    /// The same on the doc's pub/sub channel, where any process with access to Redis can publish: node
    /// messages whose entry carries a version that is not an integer in 0…2^53 − 1 (past UInt64, negative,
    /// a fraction, an exponent, a string) are dropped whole; the node keeps serving, an entry at 2^53 − 1
    /// is taken, and a later one past it does not replace it.
    @Test func corruptedPresenceVersionsOnPubSubAreDropped() async throws {
        let redis = try RedisServerProcess()
        _ = redis.command("ZADD", "tandem:{pp}:nodes", String(redis.nowMs + 600_000), "ghost")
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "num-pp", stopWhenDone: true)
        let bob = try await TestClient.connect(node.url(user: "bob"), name: "bob")
        try await bob.join("pp")
        func publish(sid: String, version: String, c: Int) {
            let entry =
                #"{"name":"n","node":"ghost","role":"editor","sid":"\#(sid)","state":{"c":\#(c)},"user":"u\#(sid.prefix(1))","v":\#(version)}"#
            _ = redis.command("PUBLISH", "tandem:{pp}", #"{"k":"p","n":"ghost","u":[\#(entry)],"r":[]}"#)
        }
        let hostile = [
            "18446744073709551615", "18446744073709551616", "9007199254740992", "-1", "1.5", "1e3", #""5""#, "null",
        ]
        for (index, version) in hostile.enumerated() {
            publish(sid: String(repeating: Character(UnicodeScalar(UInt8(ascii: "C") + UInt8(index))), count: 22), version: version, c: 1)
        }
        // One channel, delivered in order: once the valid entry is seen, every hostile one was handled.
        let valid = String(repeating: "A", count: 22)
        publish(sid: valid, version: Self.largest, c: 1)
        try await waitUntil("bob sees the entry at 2^53 − 1") { (bob.state(of: valid, in: "pp")?["c"] as? Int) == 1 }
        #expect(bob.members(of: "pp") == [bob.session, valid], "only the valid entry is taken")

        publish(sid: valid, version: Self.tooBig, c: 2)
        let marker = String(repeating: "B", count: 22)
        publish(sid: marker, version: "1", c: 1)
        try await waitUntil("bob sees the marker published after it") { bob.members(of: "pp").contains(marker) }
        #expect((bob.state(of: valid, in: "pp")?["c"] as? Int) == 1, "an entry past 2^53 − 1 does not replace it")
        #expect(try await node.get("/healthz").status == 200)
        let carol = try await TestClient.connect(node.url(user: "carol"), name: "carol")
        try await carol.join("pp")
        #expect(carol.members(of: "pp").contains(valid))
        await carol.close()
        await bob.close()
    }

    /// Numeric push ids had no size limit: one of 100,000 digits was stored in the log and the `pushes`
    /// hash and rescanned by every later commit. Now a number of at most 32 characters.
    @Test func numericPushIDsAreBoundedLikeStringOnes() async throws {
        let redis = try RedisServerProcess()
        let node = try await InProcessNode.start(redis: redis.url, nodeID: "num-id", stopWhenDone: true)
        let alice = try await TestClient.connect(node.url(user: "alice"), name: "alice")
        try await alice.join("ids")
        let huge = String(repeating: "9", count: 100_000)
        alice.sendRaw(#"{"t":"push","doc":"ids","id":\#(huge),"base":0,"ops":{"r":["put",{"a":1}]}}"#)
        let refused = try await alice.next("error", doc: "ids")
        #expect(JSON.string(refused, at: "code") == "bad_message")
        #expect(JSON.string(refused, at: "message")?.contains("32") == true, "\(refused)")
        #expect(JSON.value(refused, at: "id") == nil, "an invalid id is not echoed")
        let over = String(repeating: "1", count: 33)
        alice.sendRaw(#"{"t":"push","doc":"ids","id":\#(over),"base":0,"ops":{"r":["put",{"a":1}]}}"#)
        #expect(JSON.string(try await alice.next("error", doc: "ids"), at: "code") == "bad_message")
        // 32 characters (here a fraction with an exponent) are fine and echoed exactly as sent.
        let longest = "-1234567890123456789.0123456e+12"
        #expect(longest.utf8.count == 32)
        alice.sendRaw(#"{"t":"push","doc":"ids","id":\#(longest),"base":0,"ops":{"r":["put",{"a":2}]}}"#)
        try await waitUntil("the result of the 32-character id") { alice.rawMessages.contains { $0.contains(#""t":"result""#) } }
        let result = alice.rawMessages.first { $0.contains(#""t":"result""#) } ?? ""
        #expect(result.contains(#""id":\#(longest)"#), "echoed verbatim: \(result)")
        #expect(result.contains(#""action":"commit""#))
        // Only that push reached Redis.
        #expect(redis.command("XLEN", "tandem:{ids}:log") == "1")
        #expect(redis.command("HGET", "tandem:{ids}:pushes", alice.session).utf8.count < 64)
        await alice.close()
    }
}
