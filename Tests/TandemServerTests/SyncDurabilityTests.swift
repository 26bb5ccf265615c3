import Foundation
import TandemCore
import TandemTestSupport
import Testing

/// Durability with the embedded Redis (AOF on): what a client was told is committed survives a crash
/// of Tandem and of its redis-server.
///
/// Known gap with the default `--appendfsync everysec`: while a background fsync is in progress
/// (slow or busy disk), Redis 7.0 postpones writing its AOF buffer for up to 2 s but still sends
/// replies (and pub/sub messages), so a SIGKILLed redis-server can lose commits Tandem already
/// acknowledged. Seen once under parallel test load (18 of 60); reproduced with redis-server alone by
/// delaying fdatasync. docs/protocol.md promises no loss on a process crash with everysec; only
/// `--appendfsync always` keeps that promise, so that variant is checked strictly.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct SyncDurabilityTests {
    @Test(arguments: ["always", "everysec"])
    func acknowledgedCommitsSurviveSIGKILLOfTandemAndItsRedis(appendfsync: String) async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("tsd-\(UUID().uuidString.prefix(6))").path
        defer {
            if ProcessInfo.processInfo.environment["TANDEM_KEEP_DATA"] == nil { try? FileManager.default.removeItem(atPath: dataDir) }
        }
        print("SyncDurabilityTests: data in \(dataDir)")
        let pidFile = dataDir + "/redis/redis.pid"
        func redisPID() throws -> Int32 {
            try #require(Int32((try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        func isRunning(_ pid: Int32) -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
            return stat.split(separator: ")").last?.split(separator: " ").first != "Z"
        }
        let doc = "durable:1"
        // Durability, not admission: bursts of 60 pushes must not be refused as `busy` on a slow (sanitized) node.
        let arguments = ["--data-dir", dataDir, "--appendfsync", appendfsync, "--max-push-wait-ms", "60000"]
        var node = try await ProcessNode(arguments: arguments, nodeID: "durable")
        var alice = try await SyncClient.connect(node.url(user: "alice"), name: "alice")
        try await alice.join(doc)

        /// Pushes a burst of edits and waits for every answer; returns the last acknowledged clock.
        func editBurst(_ round: Int) async throws -> UInt64 {
            var length = alice.view(doc).records["log"]?.objectValue?["text"]?.stringValue?.utf16.count ?? 0
            for k in 1...60 {
                let marker = "<\(round).\(k)>"
                let ops = k % 3 == 0
                    ? json(#"{"r\#(round)-\#(k)":["put",{"round":\#(round),"k":\#(k)}]}"#)
                    : json(#"{"log":["patch",{"text":["append","\#(marker)",\#(length)]}]}"#)
                if k % 3 != 0 { length += marker.utf16.count }
                alice.push(doc, id: .number(round * 1000 + k), ops: ops)
            }
            var last: UInt64 = 0
            for k in 1...60 {
                let answer = try await alice.answer(doc, id: round * 1000 + k)
                #expect(answer.string("action") == "commit", "\(answer)")
                last = max(last, answer.clock() ?? 0)
            }
            return last
        }
        alice.push(doc, id: 0, ops: #"{"log":["put",{"text":""}]}"#)
        #expect(try await alice.answer(doc, id: 0).string("action") == "commit")
        var acknowledged = try await editBurst(1)

        // Round 1: SIGKILL both Tandem and its redis-server right after the last acknowledgement.
        let firstRedis = try redisPID()
        #expect(isRunning(firstRedis))
        let config = try redisCLI(["-s", dataDir + "/redis/redis.sock", "CONFIG", "GET", "append*"])
        #expect(config.contains("appendonly\nyes") && config.contains("appendfsync\n\(appendfsync)"), "AOF on: \(config)")
        node.process.signal(SIGKILL)
        kill(firstRedis, SIGKILL)
        try await waitUntil("tandem and redis-server gone") { !node.process.isRunning && !isRunning(firstRedis) }
        print("SyncDurabilityTests: killed tandem \(node.process.pid) and redis-server \(firstRedis) after clock \(acknowledged)")
        alice.socket.abort()
        node = try await ProcessNode(arguments: arguments, nodeID: "durable")
        if appendfsync == "always" {
            try await expectNothingLost(node: node, alice: alice, doc: doc, acknowledged: acknowledged)
        } else {
            try await withKnownIssue("everysec: Redis may postpone the AOF write behind a slow fsync and still reply", isIntermittent: true) {
                try await expectNothingLost(node: node, alice: alice, doc: doc, acknowledged: acknowledged)
            }
        }

        // everysec may have lost the last second (the known issue above), possibly the whole doc: then
        // Alice's replica is ahead of Redis and the next round starts over from what Redis has, with a
        // fresh client and the record the appends extend.
        if appendfsync != "always", (alice.view(doc).joinedClock ?? 0) < acknowledged {
            print("SyncDurabilityTests: everysec lost commits after clock \(alice.view(doc).joinedClock ?? 0); round 2 starts over")
            alice.socket.abort()
            alice = try await SyncClient.connect(node.url(user: "alice"), name: "alice-2")
            try await alice.join(doc)
            alice.push(doc, id: 1999, ops: #"{"log":["put",{"text":""}]}"#)
            #expect(try await alice.answer(doc, id: 1999).string("action") == "commit")
        }

        // Round 2: SIGKILL Tandem only; its redis-server lives on. The next Tandem stops that stale server
        // itself (through the pid file) and starts a fresh one on the same data.
        acknowledged = try await editBurst(2)
        let stale = try redisPID()
        let killed = node
        killed.process.signal(SIGKILL)
        try await waitUntil("tandem gone") { !killed.process.isRunning }
        #expect(isRunning(stale), "the redis-server outlived its Tandem")
        print("SyncDurabilityTests: killed tandem \(killed.process.pid) after clock \(acknowledged); redis-server \(stale) left running")
        alice.socket.abort()
        node = try await ProcessNode(arguments: arguments, nodeID: "durable")
        #expect(!isRunning(stale), "the stale redis-server was stopped by the new Tandem")
        #expect(try redisPID() != stale)
        try await expectNothingLost(node: node, alice: alice, doc: doc, acknowledged: acknowledged)
        #expect(alice.orderingViolations() == [])
        alice.socket.abort()
        node.process.signal(SIGTERM)
        _ = try await node.process.waitForExit(timeout: .seconds(20))
        withExtendedLifetime(killed) {}
    }

    private func redisCLI(_ arguments: [String]) throws -> String {
        let cli = Process()
        cli.executableURL = URL(fileURLWithPath: "/usr/bin/redis-cli")
        cli.arguments = arguments
        let output = Pipe()
        cli.standardOutput = output
        try cli.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        cli.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// Alice comes back with `since` = everything she was acknowledged: the log catch-up must start right
    /// there (a head behind it would mean lost commits), and a fresh client's snapshot equals her state.
    private func expectNothingLost(node: ProcessNode, alice: SyncClient, doc: String, acknowledged: UInt64) async throws {
        let since = alice.view(doc).head
        #expect(since >= acknowledged)
        try await alice.reconnect(node.url(user: "alice"))
        try await alice.join(doc, since: since)
        let view = alice.view(doc)
        #expect(view.joinedClock == since, "head after the restart: \(view.joinedClock.map { "\($0)" } ?? "none"), acknowledged up to \(since)")
        #expect(view.chunks.map(\.type) == ["log"], "a log catch-up from since, not a snapshot")
        let fresh = try await SyncClient.connect(node.url(user: "fresh"), name: "fresh")
        try await fresh.join(doc)
        #expect(fresh.view(doc).head == since)
        #expect(fresh.view(doc).serializedRecords == view.serializedRecords, "the restarted doc equals what was acknowledged")
        #expect(fresh.orderingViolations() == [])
        fresh.socket.abort()
    }
}
