import Foundation
import TandemCore
import TandemRedis
import TandemTestSupport
import Testing

@testable import TandemServer

/// `--history-format` (docs/operations.md, Upgrading): what each format writes is what nodes of that
/// release read, and during a rolling upgrade a node writing the old format and one writing the new read
/// each other's history. The previous release's reader is its read script, verbatim, with the decoding it
/// did (zlib and JSON blobs, segments starting right after their checkpoint): `V3Reader`.
@Suite(.serialized, .cleanup, .timeLimit(.minutes(3 * TestTimeouts.scale))) struct HistoryUpgradeTests {
    /// The read of blobs v3 (`HistoryScripts.common` and `.read` at c4caaa1, the last release before v4).
    static let v3Read = RedisScript(
        """
        local clockKey, recordsKey, log = KEYS[1], KEYS[2], KEYS[5]
        local sealedKey, segs, index, ckpts, versions = KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]
        local function fmt(x) return string.format('%d', x) end
        -- The first clock the live log holds (a batch entry's id is its last clock), nil when empty.
        local function firstLogClock()
          local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
          if #first == 0 then return nil end
          local n, fields = 1, first[1][2]
          for j = 1, #fields, 2 do if fields[j] == 'n' then n = tonumber(fields[j + 1]) end end
          return tonumber(string.match(first[1][1], '^(%d+)')) - n + 1
        end
        -- Log entries holding clocks from..to (the first may start before): at most maxEntries of them and
        -- about maxBytes of field values (at least one entry); returns the entries and whether `to` was
        -- reached. Entries are at most a push or a batch each (--max-push-bytes, --max-batch-bytes).
        local function logRange(from, to, maxEntries, maxBytes)
          local out, cursor, bytes = {}, fmt(from) .. '-0', 0
          while #out < maxEntries and (#out == 0 or bytes < maxBytes) do
            local got = redis.call('XRANGE', log, cursor, '+', 'COUNT', math.min(16, maxEntries - #out))
            for _, entry in ipairs(got) do
              out[#out + 1] = entry
              cursor = '(' .. entry[1]
              local fields = entry[2]
              for j = 2, #fields, 2 do bytes = bytes + #fields[j] end
              if tonumber(string.match(entry[1], '^(%d+)')) >= to then return out, true end
            end
            if #got == 0 then return out, false end
          end
          return out, false
        end

        local head = tonumber(redis.call('GET', clockKey) or '0')
        local clock = tonumber(ARGV[1])
        if clock > head or head == 0 then return {'beyond', fmt(head)} end
        local sealed = tonumber(redis.call('GET', sealedKey) or '-1')
        local ckClock, blob
        if sealed < 0 then
          -- Not sealed yet: only a log that still starts at 1 holds the whole past.
          if firstLogClock() ~= 1 then return {'missing', fmt(head), ''} end
          sealed, ckClock, blob = 0, 0, '{"clock":0,"at":0,"records":{}}'
        else
          local ck = redis.call('ZREVRANGEBYSCORE', versions, clock, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
          if #ck == 0 then
            local oldest = redis.call('ZRANGE', versions, 0, 0, 'WITHSCORES')
            return {'missing', fmt(head), oldest[2] or ''}
          end
          ckClock = tonumber(ck[2])
          blob = redis.call('HGET', ckpts, fmt(ckClock))
          if not blob then return {'missing', fmt(head), ''} end
        end
        local upto = math.min(clock, sealed)
        local blobs = {}
        if upto > ckClock then
          local members = redis.call('ZRANGEBYSCORE', index, '(' .. fmt(ckClock), '+inf', 'LIMIT', 0, tonumber(ARGV[3]))
          local lasts, reached = {}, ckClock
          for _, member in ipairs(members) do
            local first, last = string.match(member, '^(%d+):(%d+):')
            if tonumber(first) ~= reached + 1 then return {'missing', fmt(head), ''} end
            lasts[#lasts + 1] = last
            reached = tonumber(last)
            if reached >= upto then break end
          end
          if reached < upto then return {'busy', fmt(head)} end
          blobs = redis.call('HMGET', segs, unpack(lasts))
          for _, b in ipairs(blobs) do if not b then return {'missing', fmt(head), ''} end end
        end
        local entries = {}
        if clock > sealed then
          local reachedLog
          entries, reachedLog = logRange(sealed + 1, clock, tonumber(ARGV[2]), tonumber(ARGV[4]))
          if not reachedLog then return {'busy', fmt(head)} end
        end
        return {'ok', fmt(head), fmt(sealed), fmt(ckClock), blob, blobs, entries}
        """)

    /// Reads the state at `clock` the way a node of the previous release did; nil (with the reason) where
    /// it could not.
    static func v3State(_ redis: RedisClient, doc: String, clock: UInt64) async throws -> Result<[String: JSONValue], HistoryError> {
        let reply = try await redis.evalScript(
            v3Read, keys: GroupCommitScript.keys(doc), args: [String(clock), 20_000, 256, 64 << 20]
        )
        let parts = reply.array ?? []
        guard parts.first?.string == "ok", parts.count == 7 else { return .failure(.missing("\(parts.first?.string ?? "?") at \(clock)")) }
        // v3's HistoryBlob.unpack: `z` (zlib) or `{` (JSON), nothing else.
        let blobs = [parts[4].bytes ?? []] + (parts[5].array ?? []).map { $0.bytes ?? [] }
        let readable: Set<UInt8> = [UInt8(ascii: "z"), UInt8(ascii: "{")]
        guard blobs.allSatisfy({ blob in blob.first.map(readable.contains) ?? false }) else {
            return .failure(.corrupt("a blob v3 cannot inflate at \(clock)"))
        }
        return Result { () throws(HistoryError) in
            let checkpoint = try HistoryCodec.decodeCheckpoint(HistoryBlob.unpack(blobs[0]))
            var commits: [CommitNotice] = []
            for blob in blobs.dropFirst() { commits += try HistoryCodec.decodeSegment(HistoryBlob.unpack(blob)) }
            let sealed = parts[2].string.flatMap(UInt64.init) ?? 0
            for entry in parts[6].array ?? [] { commits += SyncStore.notices(fromStreamEntry: entry).filter { $0.clock > sealed } }
            return try HistoryReplay.state(from: checkpoint, commits: commits.filter { $0.clock > checkpoint.clock }, to: clock).records
        }
    }

    static func records(_ node: InProcessNode, _ doc: String, _ clock: UInt64) async throws -> [String: JSONValue]? {
        try JSONParser.parse(try await node.get("/api/docs/\(doc)/at?clock=\(clock)").body).objectValue?["records"]?.objectValue
    }

    /// A doc's checkpoint fields, version members and the kinds (first bytes) of its blobs.
    static func layout(_ redis: RedisClient, _ doc: String) async throws -> (checkpoints: [String], members: [String], kinds: Set<UInt8>) {
        var fields: [String] = []
        var kinds = Set<UInt8>()
        for key in ["hsegs", "hckpts"] {
            let flat = try await redis.send(RedisCommand("HGETALL", SyncRedis.key(doc, key))).array ?? []
            for k in stride(from: 0, to: flat.count, by: 2) {
                let field = flat[k].string ?? ""
                if key == "hckpts" { fields.append(field) }
                if !field.hasPrefix("a:"), let first = flat[k + 1].bytes?.first { kinds.insert(first) }
            }
        }
        let members = (try await redis.send(RedisCommand("ZRANGE", SyncRedis.key(doc, "hversions"), "0", "-1")).array ?? []).compactMap(\.string)
        return (fields, members, kinds)
    }

    static func connect(_ cluster: SyncCluster) async throws -> RedisClient {
        let redis = try RedisClient(url: cluster.redis.url)
        redis.start()
        try await waitUntil("connected to Redis") { redis.isConnected }
        return redis
    }

    /// Each `--history-format` writes its own layout, every clock reads back on this release, and what
    /// format 3 writes reads on the previous release's reader too (formats 4 and 5 do not: why the
    /// option exists).
    @Test(arguments: [HistoryFormat.v3, .v4, .v5]) func eachFormatWritesWhatItsReleaseReads(format: HistoryFormat) async throws {
        let cluster = try await SyncCluster.start(nodes: 1) {
            $0.logRetention = 8
            $0.checkpointEvery = 10
            $0.historyFormat = format
        }
        let doc = "history:format-\(format.rawValue)"
        let alice = try await cluster.client("alice")
        let bob = try await cluster.client("bob")
        try await alice.join(doc)
        try await bob.join(doc)
        alice.recordStates(doc)
        for id in 1...100 {
            let client = id % 2 == 0 ? alice : bob
            client.push(doc, id: id, ops: #"{"r\#(id % 6)":["patch",{"n":["put",\#(id)]}],"s\#(id % 4)":["put",{"v":\#(id),"t":"text"}]}"#)
            _ = try await client.answer(doc, id: id)
        }
        let node = cluster.nodes[0]
        #expect(try await node.sealHistory(doc) == 100)
        let states = try #require(alice.view(doc).statesByClock)
        for clock in 0...UInt64(100) { #expect(try await Self.records(node, doc, clock) == states[clock], "clock \(clock)") }

        let redis = try await Self.connect(cluster)
        defer { redis.shutdown() }
        let layout = try await Self.layout(redis, doc)
        let deltas = layout.checkpoints.filter { $0.hasPrefix("d:") }
        let authors = layout.checkpoints.filter { $0.hasPrefix("a:") }
        #expect(layout.members.count == 11, "a version every 10 commits: \(layout.members)")
        var v3Failures = 0
        for clock in 0...UInt64(100) {
            switch try await Self.v3State(redis, doc: doc, clock: clock) {
            case .success(let records): #expect(records == states[clock], "v3 reader, clock \(clock)")
            case .failure: v3Failures += 1
            }
        }
        switch format {
        case .v3:
            #expect(layout.kinds.isSubset(of: [UInt8(ascii: "z"), UInt8(ascii: "{")]), "\(layout.kinds)")
            #expect(layout.members.allSatisfy { (try? HistoryVersion(json: Array($0.utf8))) != nil }, "JSON members: \(layout.members)")
            #expect(deltas.isEmpty && authors.isEmpty)
            #expect(v3Failures == 0, "the previous release reads every clock")
        case .v4:
            #expect(layout.members.allSatisfy { !$0.hasPrefix("{") } && !authors.isEmpty)
            #expect(deltas.isEmpty)
            #expect(v3Failures > 0)
        case .v5:
            #expect(deltas.count == 9, "deltas between the full checkpoints at 0 and 80: \(layout.checkpoints)")
            #expect(layout.checkpoints.contains("0") && layout.checkpoints.contains("80"))
            #expect(v3Failures > 0)
        }
        await cluster.finish()
    }

    /// A rolling upgrade: node-0 still writes format 3 (`--history-format 3`, as a not-yet-upgraded
    /// node's sealer would), node-1 the new format. What node-0 seals reads on node-1 and on the previous
    /// release's reader; once node-1 alone seals the doc (deltas on node-0's full checkpoints), node-0
    /// reads all of it.
    @Test func oldAndNewFormatNodesReadEachOthersHistory() async throws {
        let cluster = try await SyncCluster.start(nodes: 2) {
            $0.logRetention = 8
            $0.checkpointEvery = 10
            $0.historyFormat = $0.nodeID == "node-0" ? .v3 : .v5
        }
        let doc = "history:rolling"
        let old = cluster.nodes[0]
        let new = cluster.nodes[1]
        let alice = try await cluster.client("alice", node: 0)
        try await alice.join(doc)
        alice.recordStates(doc)
        for id in 1...60 {
            alice.push(doc, id: id, ops: #"{"r\#(id % 5)":["put",{"v":\#(id)}]}"#)
            _ = try await alice.answer(doc, id: id)
        }
        #expect(try await old.sealHistory(doc) == 60)
        var states = try #require(alice.view(doc).statesByClock)
        let redis = try await Self.connect(cluster)
        defer { redis.shutdown() }
        for clock in 0...UInt64(60) {
            #expect(try await Self.records(new, doc, clock) == states[clock], "the new node reads the old one's, clock \(clock)")
            #expect(try await Self.v3State(redis, doc: doc, clock: clock).get() == states[clock], "the old reader, clock \(clock)")
        }

        // The old node lets go of the doc; the new one writes on.
        alice.socket.abort()
        let bob = try await cluster.client("bob", node: 1)
        try await bob.join(doc)
        bob.recordStates(doc)
        for id in 61...120 {
            bob.push(doc, id: id, ops: #"{"r\#(id % 5)":["put",{"v":\#(id)}]}"#)
            _ = try await bob.answer(doc, id: id)
        }
        #expect(try await new.sealHistory(doc) == 120)
        let layout = try await Self.layout(redis, doc)
        #expect(layout.checkpoints.contains { $0.hasPrefix("d:") }, "the new node wrote deltas: \(layout.checkpoints)")
        for (clock, records) in try #require(bob.view(doc).statesByClock) where clock > 60 { states[clock] = records }
        for clock in 0...UInt64(120) {
            #expect(try await Self.records(old, doc, clock) == states[clock], "the old-format node reads the new one's, clock \(clock)")
            #expect(try await Self.records(new, doc, clock) == states[clock], "clock \(clock)")
        }
        await cluster.finish()
    }
}
