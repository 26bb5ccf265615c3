import Foundation
import TandemCore
import TandemRedis
import TandemTestSupport
import Testing

@testable import TandemServer

/// History's stored forms (docs/history.md): blobs of kind `b` (bzip2 parts, v4) and `z` (zlib, up to
/// v3) both read, and history written in the old forms — zlib blobs, version entries as JSON members —
/// reads back the same after an upgrade, with new segments written after it.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(2 * TestTimeouts.scale))) struct HistoryFormatTests {
    /// A v3 segment as the zlib code wrote it (`z`, a sync flush before `"ops"`), bytes kept verbatim:
    /// commits 7 and 8 by alice and bob.
    static let v3Blob: [UInt8] = [
        0x7a, 0x78, 0xda, 0x24, 0x8c, 0x41, 0x0a, 0x80, 0x20, 0x14, 0x44, 0xef, 0x32, 0xeb, 0xbf, 0x50, 0x22, 0x82, 0xbf, 0xb3,
        0x6b, 0x48, 0x0b, 0x2d, 0x03, 0x21, 0x14, 0xfa, 0x12, 0x84, 0x74, 0xf7, 0xd2, 0x76, 0x6f, 0x66, 0x78, 0x53, 0x71, 0x81,
        0x07, 0xc2, 0x1e, 0x4f, 0x29, 0xe0, 0x89, 0x20, 0x41, 0x24, 0xe6, 0x24, 0x60, 0x0b, 0x77, 0xc4, 0x35, 0x80, 0xe0, 0xb3,
        0xc7, 0x42, 0x48, 0x79, 0x0b, 0xbd, 0x4f, 0xba, 0x45, 0x7f, 0x83, 0x61, 0x66, 0xfc, 0x43, 0x63, 0xf3, 0xb1, 0xfb, 0x6e,
        0xac, 0x56, 0x4a, 0xd1, 0xd8, 0x95, 0xd2, 0x94, 0xfa, 0xd0, 0x0b, 0x00, 0x00, 0xff, 0xff, 0x53, 0xca, 0x2f, 0x00, 0xe9,
        0xad, 0x56, 0x4a, 0x04, 0x99, 0x50, 0x50, 0x5a, 0xa2, 0xa4, 0x53, 0xad, 0x54, 0xa1, 0x64, 0x65, 0x58, 0x1b, 0x5b, 0xab,
        0x03, 0x13, 0x4d, 0x2c, 0x49, 0xce, 0x80, 0x8a, 0x43, 0xd5, 0x18, 0xc5, 0xd6, 0x82, 0x20, 0x00, 0x3e, 0x96, 0x31, 0xd2,
    ]

    @Test func blobKindsRoundTripAndOldBlobsRead() throws {
        let old = try HistoryCodec.decodeSegment(HistoryBlob.unpack(Self.v3Blob))
        #expect(old.map(\.clock) == [7, 8])
        #expect(old.map(\.by) == ["alice", "bob"])
        #expect(old.map(\.committedAtMs) == [1000, 1005])

        let commits = (1...300).map { k in
            CommitNotice(
                clock: UInt64(k), ops: try! JSONParser.parse(Array(#"{"r\#(k % 7)":["patch",{"n":["put",\#(k)]}]}"#.utf8)),
                by: "s\(k % 5)", node: "n", pushID: nil, committedAtMs: 1_000 + UInt64(k * 3))
        }
        let parts = HistoryCodec.encodeSegmentParts(commits)
        let blob = HistoryBlob.pack([parts.columns, parts.times, parts.ops])
        #expect(blob.first == UInt8(ascii: "b"))
        #expect(HistoryBlob.packBzip2([parts.columns, parts.times, parts.ops]) == blob)
        // Small blobs are smaller in zlib: kind z.
        let small = Array(#"{"clock":3,"at":5,"records":{"a":{"v":1}}}"#.utf8)
        #expect(HistoryBlob.pack(small).first == UInt8(ascii: "z"))
        #expect(try HistoryBlob.unpack(HistoryBlob.pack(small)) == small)
        #expect(try HistoryBlob.unpack(blob) == HistoryCodec.encodeSegment(commits))
        #expect(try HistoryCodec.decodeSegment(HistoryBlob.unpack(blob)).map(\.clock) == Array(1...300))
        let zlib = HistoryBlob.packZlib([parts.columns + parts.times, parts.ops])
        #expect(zlib.first == UInt8(ascii: "z"))
        #expect(try HistoryBlob.unpack(zlib) == HistoryCodec.encodeSegment(commits))
        #expect(blob.count < zlib.count, "bzip2 \(blob.count) B, zlib \(zlib.count) B")
        // Empty parts and a part past 100 KB (more than one block size).
        let big = [UInt8](repeating: UInt8(ascii: "x"), count: 250_000) + Array("tail".utf8)
        #expect(try HistoryBlob.unpack(#require(HistoryBlob.packBzip2([[], big, []]))) == big)

        // Damage is an error, never a crash or a wrong answer: cut short, a bad length, flipped bytes,
        // trailing bytes, more than the cap.
        #expect(throws: HistoryError.self) { try HistoryBlob.unpack(Array(blob.dropLast(3))) }
        #expect(throws: HistoryError.self) { try HistoryBlob.unpack([UInt8(ascii: "b"), 0xff, 0xff]) }
        #expect(throws: HistoryError.self) { try HistoryBlob.unpack([UInt8(ascii: "b"), 0x05, 1, 2]) }
        var flipped = blob
        flipped[flipped.count / 2] ^= 0x55
        #expect(throws: HistoryError.self) { try HistoryBlob.unpack(flipped) }
        let single = try #require(HistoryBlob.packBzip2([Array("{}".utf8)]))
        var trailing = single
        trailing[1] += 1  // the part's length now covers a byte after its stream
        trailing.append(0)
        #expect(throws: HistoryError.self) { try HistoryBlob.unpack(trailing) }
        #expect(throws: HistoryError.self) { try HistoryBlob.unpack(#require(HistoryBlob.packBzip2([big])), maxBytes: 100_000) }
        #expect(throws: HistoryError.self) { try HistoryBlob.unpack([UInt8(ascii: "q"), 1]) }
    }

    /// Version entries: the v4 member with its authors apart, and the JSON member of older history.
    @Test func versionMembersOldAndNew() throws {
        let version = HistoryVersion(clock: 40, atMs: 1_234, commits: 20, by: ["a", "b\"c"], moreAuthors: true)
        #expect(String(decoding: version.member, as: UTF8.self) == "40:1234:20:1")
        #expect(try HistoryVersion(member: version.member, authors: version.authorsJSON) == version)
        #expect(try HistoryVersion(member: version.json, authors: nil) == version)
        let bare = try HistoryVersion(member: Array("0:0:0:0".utf8), authors: nil)
        #expect(bare == HistoryVersion(clock: 0, atMs: 0, commits: 0, by: []))
        for bad in ["", "1:2:3", "1:2:x:0", "-1:2:3:0", "1:2:3:0:5"] {
            #expect(throws: HistoryError.self, "\(bad)") { try HistoryVersion(member: Array(bad.utf8), authors: nil) }
        }
        #expect(throws: HistoryError.self) { try HistoryVersion(member: version.member, authors: Array("{".utf8)) }
    }

    /// History written by a node before v4 (zlib blobs, JSON version members with their authors) reads
    /// back exactly as before, and history sealed after the upgrade continues it.
    @Test func historyInTheOldFormsStillReads() async throws {
        let cluster = try await SyncCluster.start(nodes: 1) {
            $0.logRetention = 8
            $0.checkpointEvery = 10
        }
        let doc = "history:old-forms"
        let alice = try await cluster.client("alice")
        let bob = try await cluster.client("bob")
        try await alice.join(doc)
        try await bob.join(doc)
        alice.recordStates(doc)
        var id = 0
        func commit(_ count: Int) async throws {
            for _ in 0..<count {
                id += 1
                let client = id % 2 == 0 ? alice : bob
                client.push(doc, id: id, ops: #"{"r\#(id % 4)":["put",{"v":\#(id)}]}"#)
                _ = try await client.answer(doc, id: id)
            }
        }
        try await commit(60)
        let node = cluster.nodes[0]
        // Sealed until fewer than `logRetention` (8) commits wait, the sealer's threshold: from then on it
        // writes nothing until new commits come (or an hour passes), so the rewrite and the reads below do
        // not race it. Waiting only for 50 let a busy machine's next seal round (51…60, a second later)
        // land between `before` and `after`.
        try await waitUntil("sealed to 53 or later") { UInt64(cluster.redis.command("GET", SyncRedis.key(doc, "hsealed"))) ?? 0 >= 60 - 8 + 1 }

        func reads(upTo head: UInt64) async throws -> (states: [UInt64: String], versions: String, log: String) {
            var states: [UInt64: String] = [:]
            for clock in 0...head { states[clock] = try await node.get("/api/docs/\(doc)/at?clock=\(clock)").body }
            return (
                states, try await node.get("/api/docs/\(doc)/versions?limit=1000").body,
                try await node.get("/api/docs/\(doc)/log?from=0&limit=1000").body
            )
        }
        let before = try await reads(upTo: 50)

        // Rewrite what the sealer wrote in the forms before v4.
        let redis = try RedisClient(url: cluster.redis.url)
        redis.start()
        defer { redis.shutdown() }
        try await waitUntil("connected to Redis") { redis.isConnected }
        let ckpts = SyncRedis.key(doc, "hckpts")
        let versionsKey = SyncRedis.key(doc, "hversions")
        for key in [SyncRedis.key(doc, "hsegs"), ckpts] {
            let flat = try await redis.send(RedisCommand("HGETALL", key)).array ?? []
            #expect(flat.count >= 2, "\(key) holds blobs")
            for k in stride(from: 0, to: flat.count, by: 2) {
                let field = flat[k].string ?? ""
                guard !field.hasPrefix("a:"), let blob = flat[k + 1].bytes else { continue }
                #expect([UInt8(ascii: "b"), UInt8(ascii: "z"), UInt8(ascii: "{")].contains(blob.first), "\(key) \(field) has a known kind")
                _ = try await redis.send(RedisCommand("HSET", key, field, HistoryBlob.packZlib([try HistoryBlob.unpack(blob)])))
            }
        }
        let members = try await redis.send(RedisCommand("ZRANGE", versionsKey, "0", "-1", "WITHSCORES")).array ?? []
        #expect(members.count >= 10)
        for k in stride(from: 0, to: members.count, by: 2) {
            let member = members[k].bytes ?? []
            let clock = members[k + 1].string ?? ""
            let authors = try await redis.send(RedisCommand("HGET", ckpts, "a:\(clock)")).bytes
            let version = try HistoryVersion(member: member, authors: authors)
            _ = try await redis.send(RedisCommand("ZREM", versionsKey, member))
            _ = try await redis.send(RedisCommand("ZADD", versionsKey, clock, version.json))
            _ = try await redis.send(RedisCommand("HDEL", ckpts, "a:\(clock)"))
        }
        #expect(cluster.redis.command("ZRANGE", versionsKey, "-1", "-1").hasPrefix("{"))

        let after = try await reads(upTo: 50)
        #expect(after.versions == before.versions)
        #expect(after.log == before.log)
        for clock in 0...UInt64(50) { #expect(after.states[clock] == before.states[clock], "clock \(clock)") }
        #expect(before.versions.contains("\"\(alice.session)\"") && before.versions.contains("\"\(bob.session)\""))

        // The sealer continues the old history in the new forms; every clock still reads its state.
        try await commit(40)
        try await waitUntil("sealed to 90") { UInt64(cluster.redis.command("GET", SyncRedis.key(doc, "hsealed"))) ?? 0 >= 90 }
        let states = try #require(alice.view(doc).statesByClock)
        for clock in stride(from: UInt64(0), through: 100, by: 3) {
            let records = try JSONParser.parse(try await node.get("/api/docs/\(doc)/at?clock=\(clock)").body).objectValue?["records"]?.objectValue
            #expect(records == states[clock], "clock \(clock)")
        }
        let list = try JSONParser.parse(try await node.get("/api/docs/\(doc)/versions?limit=1000").body).objectValue?["versions"]?.arrayValue ?? []
        let clocks = list.compactMap { $0.objectValue?["clock"]?.uint64Value }
        #expect(clocks.first ?? 0 >= 90 && clocks.last == 0 && clocks == clocks.sorted(by: >), "\(clocks)")
        #expect(list.allSatisfy { ($0.objectValue?["clock"] == .number("0")) || !($0.objectValue?["by"]?.arrayValue ?? []).isEmpty })
        #expect(!cluster.redis.command("ZRANGE", versionsKey, "-1", "-1").hasPrefix("{"), "new entries are members")
        await cluster.finish()
    }
}
