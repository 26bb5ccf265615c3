import NIOCore
import TandemCore
import TandemRedis

/// Group commits and the log in both of its entry formats (see `GroupCommitScript`).
extension SyncStore {
    /// Commits `batch` atomically. The future fails when Redis does (the batch may or may not have been
    /// executed: `CommitBatchOutcome.failed` for the pipeline).
    /// - Parameters:
    ///   - docTTLMs: the doc's keys expire after this long without a commit (0: never); default the store's.
    ///   - logMode: `.perCommit` while nodes from before group commit still serve the doc; default the store's.
    ///   - checkLegacy: the doc may hold re-push records written by nodes from before group commit (they
    ///     existed when the doc was loaded, or such nodes may still be committing: `.perCommit`).
    ///   - keys: `GroupCommitScript.encodedKeys(doc)`, if the caller keeps them (made here otherwise).
    ///   - ownSubscribers: how many subscribers of the doc's channel are this node (1 while its
    ///     subscription is confirmed, 0 while not): the batch's message is published only if Redis counts
    ///     more (`GroupCommitScript.commit`). −1 (the default): always publish; so in a cluster, whatever
    ///     the caller says (`PUBSUB NUMSUB` counts only one server's subscribers there).
    func commit(
        doc: String, batch: CommitBatch, docTTLMs: Int? = nil, logMode: GroupCommitScript.LogMode? = nil,
        checkLegacy: Bool = true, node: String? = nil, keys: RedisEncodedArguments? = nil, ownSubscribers: Int = -1,
        on loop: EventLoop
    ) -> EventLoopFuture<CommitBatchOutcome> {
        commitReturningSums(
            doc: doc, batch: batch, docTTLMs: docTTLMs, logMode: logMode, checkLegacy: checkLegacy, node: node, keys: keys,
            ownSubscribers: ownSubscribers, on: loop
        ).map { $0.outcome }
    }

    /// `commit`, with the doc's checksum after each commit as the script computed it (issue 13; empty
    /// unless committed, and when Redis did not know the checksum before the batch), and whether the
    /// batch's message was published (false only for a commit that found no other listener).
    func commitReturningSums(
        doc: String, batch: CommitBatch, docTTLMs: Int? = nil, logMode: GroupCommitScript.LogMode? = nil,
        checkLegacy: Bool = true, node: String? = nil, keys: RedisEncodedArguments? = nil, ownSubscribers: Int = -1,
        on loop: EventLoop
    ) -> EventLoopFuture<CommitReply> {
        let logMode = logMode ?? self.logMode
        let command = Self.command(
            redis.publishing(GroupCommitScript.commit, sharded: ShardedPublishing.commit), doc: doc, batch,
            node: node ?? nodeID, retention: retention, maxDocRecords: maxDocRecords, docTTLMs: docTTLMs ?? Int(self.docTTLMs),
            logMode: logMode, checkLegacy: checkLegacy || logMode == .perCommit, nowMs: NodeClock().wallMs(),
            // A single Redis is called with the clock key alone: the caller's (every key) is a Cluster's.
            keys: redis.isClusterMode ? keys : nil, allKeys: redis.isClusterMode,
            ownSubscribers: redis.isClusterMode ? -1 : ownSubscribers)
        // `send` of a command carrying its script is `evalScript` (EVALSHA, loaded first, EVAL on NOSCRIPT;
        // in a cluster routed by its keys).
        let committed = redis.send(command, on: loop).flatMapThrowing { try Self.reply(of: $0) }
        guard let acknowledgement = replicaAcknowledgement else { return committed }
        let redis = self.redis
        return committed.flatMap { reply in
            guard Self.awaitsAcknowledgement(reply.outcome) else { return loop.makeSucceededFuture(reply) }
            return acknowledgement.acknowledge(doc: doc, redis: redis, on: loop).map { reply }
        }
    }

    /// The group-commit call for `batch`: `EVALSHA` with the doc's keys (`allKeys`) and the arguments the
    /// script reads (see `GroupCommitScript.commit`), written straight into the command (no key strings,
    /// no `[any RedisArgument]`: about a hundred arguments for a batch of ten, most of the Swift cost of
    /// a script call in the callgrind profile of the commit path).
    /// - Parameters:
    ///   - keys: `GroupCommitScript.encodedKeys(doc)` kept by the caller (nil: written here, see `allKeys`).
    ///   - allKeys: name every key of the doc (a Redis Cluster), not the clock key alone
    ///     (`GroupCommitScript.writeKeys`).
    ///   - ownSubscribers: see `commit`; −1 always publishes.
    static func command(
        _ script: RedisScript, doc: String, _ batch: CommitBatch, node: String, retention: Int, maxDocRecords: Int,
        docTTLMs: Int, logMode: GroupCommitScript.LogMode, checkLegacy: Bool = true, nowMs: UInt64 = NodeClock().wallMs(),
        keys: RedisEncodedArguments? = nil, allKeys: Bool = false, ownSubscribers: Int = -1
    ) -> RedisCommand {
        let tail = batch.after?.tail ?? ""
        // About what the call takes (keys, ops and values, headers, ids): enough that it rarely grows.
        let capacity =
            1024 + 2 * batch.bytes + 128 * batch.commits.count + 64 * (batch.expectations.count + batch.writes.count)
        return RedisCommand(evalSHA: script, capacity: capacity) { out in
            if let keys { out.write(encoded: keys) } else { GroupCommitScript.writeKeys(doc, all: allKeys, into: &out) }
            writeArguments(
                batch, tail: tail, node: node, retention: retention, maxDocRecords: maxDocRecords, docTTLMs: docTTLMs,
                logMode: logMode, checkLegacy: checkLegacy, nowMs: nowMs, ownSubscribers: ownSubscribers, into: &out)
        }
    }

    /// `GroupCommitScript.commit`'s ARGV for `batch` (see `command`). `inRound`: a doc's part of a commit
    /// round's ARGV, without the four arguments the round gives once for every doc (node, retention,
    /// docTTLMs, nowMs: `roundCommand`).
    static func writeArguments(
        _ batch: CommitBatch, tail: String, node: String, retention: Int, maxDocRecords: Int, docTTLMs: Int,
        logMode: GroupCommitScript.LogMode, checkLegacy: Bool, nowMs: UInt64, ownSubscribers: Int, inRound: Bool = false,
        into out: inout RedisCommandEncoder
    ) {
        if !inRound {
            out.write(node)
            out.write(retention)
            out.write(max(docTTLMs, 0))
        }
        out.write(GroupCommitScript.mode(logMode, checkLegacy: checkLegacy))
        if !inRound { out.write(nowMs) }
        // growth: the size check's numbers, only for a batch that creates records.
        if batch.created == 0 { out.write("0") } else { out.write("\(batch.created) \(batch.removed) \(maxDocRecords)") }
        out.write(batch.commits.count)
        out.write(batch.token)
        out.write(tail)  // `token@lastClock` of the batch this one runs behind: the head it must find
        for commit in batch.commits {
            out.write(commit.sessionID)
            out.write(commit.pushID.serialized)
            out.write(commit.encodedOps)
        }
        out.write(batch.expectations.count)
        for (id, expectation) in batch.expectations {
            out.write(id)
            switch expectation {
            case .version(let version):
                out.write("v")
                out.write(version)
            case .exists:
                out.write("e")
                // The version the replica had: the script still only requires the record to exist, but a
                // different version means the checksum deltas started from a stale value (issue 13).
                if let version = batch.assumedVersions[id] { out.write(version) } else { out.write("") }
            case .absent:
                out.write("a")
                out.write("")
            }
        }
        out.write(batch.writes.count)
        for (id, write) in batch.writes {
            out.write(id)
            out.write(write.value == nil ? "r" : (write.wasMissing ? "c" : "p"))
            out.write(write.value ?? [])
            out.write(write.commitIndex)
        }
        for commit in batch.commits {
            out.writeBulkString(length: DocChecksum.hexLength) { commit.sumDelta.writeHex(to: $0) }
        }
        out.write(ownSubscribers)
    }

    /// One doc's part of a commit round (`commitRound`): what `commitReturningSums` takes for it.
    struct RoundEntry {
        var doc: String
        var batch: CommitBatch
        var checkLegacy: Bool
        /// See `commit`; −1 always publishes.
        var ownSubscribers: Int
    }

    /// What a group commit's reply says (`reply(of:)`).
    typealias CommitReply = (outcome: CommitBatchOutcome, sums: [DocChecksum], published: Bool)

    /// Whether a commit's answer waits for `--redis-wait-replicas` (`ReplicaAcknowledgement`): a commit, and
    /// a duplicate too — its first commit may be the one whose acknowledgement timed out (same node, same
    /// connection: the WAIT covers it).
    static func awaitsAcknowledgement(_ outcome: CommitBatchOutcome) -> Bool {
        switch outcome {
        case .committed, .duplicate: return true
        default: return false
        }
    }

    /// Commits the batches of several docs in one call (`GroupCommitScript.commitRound`; a single Redis,
    /// not a Cluster: the caller checks `redis.isClusterMode`). Each doc gets the result its own
    /// `commitReturningSums` would have: its reply, or a failure when its part of the reply is an error or
    /// unreadable. When the call itself fails (Redis down, an error that stopped the script) every doc
    /// fails with it. With `--redis-wait-replicas`, one WAIT after the round covers every doc in it.
    /// - Parameter nowMs: the commits' `at` (the node's wall clock; a test's fixed time).
    func commitRound(_ entries: [RoundEntry], nowMs: UInt64 = NodeClock().wallMs(), on loop: EventLoop)
        -> EventLoopFuture<[Result<CommitReply, any Error>]>
    {
        let command = Self.roundCommand(
            entries, node: nodeID, retention: retention, maxDocRecords: maxDocRecords, docTTLMs: Int(docTTLMs), logMode: logMode,
            nowMs: nowMs)
        let count = entries.count
        let replied = redis.send(command, on: loop).flatMapThrowing { reply -> [Result<CommitReply, any Error>] in
            guard case .array(let parts) = reply, parts.count == count else { throw SyncStoreError.unexpectedReply("round: \(reply)") }
            return parts.map { part in
                if case .error(let message) = part { return .failure(RedisError.server(message)) }
                return Result { try Self.reply(of: part) }
            }
        }
        guard let acknowledgement = replicaAcknowledgement else { return replied }
        let redis = self.redis
        return replied.flatMap { results in
            let acknowledged = results.indices.filter { k in
                guard case .success(let reply) = results[k] else { return false }
                return Self.awaitsAcknowledgement(reply.outcome)
            }
            guard let first = acknowledged.first else { return loop.makeSucceededFuture(results) }
            // One connection to the one Redis: a WAIT after the round covers every write in it.
            return acknowledgement.acknowledge(doc: entries[first].doc, redis: redis, on: loop).map { results }.flatMapErrorThrowing {
                error in
                var results = results
                for k in acknowledged { results[k] = .failure(error) }
                return results
            }
        }
    }

    /// The commit-round call: `EVALSHA` of `GroupCommitScript.commitRound` with each doc's clock key, the
    /// four arguments every doc shares, then per doc the rest of `commit`'s arguments for its batch.
    static func roundCommand(
        _ entries: [RoundEntry], node: String, retention: Int, maxDocRecords: Int, docTTLMs: Int,
        logMode: GroupCommitScript.LogMode, nowMs: UInt64 = NodeClock().wallMs()
    ) -> RedisCommand {
        var capacity = 1024
        for entry in entries {
            let batch = entry.batch
            capacity += 192 + 2 * batch.bytes + 128 * batch.commits.count + 64 * (batch.expectations.count + batch.writes.count)
        }
        return RedisCommand(evalSHA: GroupCommitScript.commitRound, capacity: capacity) { out in
            out.write(entries.count)
            for entry in entries { GroupCommitScript.writeClockKey(entry.doc, into: &out) }
            out.write(node)
            out.write(retention)
            out.write(max(docTTLMs, 0))
            out.write(nowMs)
            for entry in entries {
                writeArguments(
                    entry.batch, tail: entry.batch.after?.tail ?? "", node: node, retention: retention, maxDocRecords: maxDocRecords,
                    docTTLMs: docTTLMs, logMode: logMode, checkLegacy: entry.checkLegacy || logMode == .perCommit, nowMs: nowMs,
                    ownSubscribers: entry.ownSubscribers, inRound: true, into: &out)
            }
        }
    }

    /// The script's reply in one pass: the outcome, the checksums after each commit of an 'ok' reply
    /// (empty otherwise, nil-free) and whether its message was published (true otherwise). An 'ok' is
    /// one string (`okText`); the array form (`{'ok', first, at, {sums…}, published}`, the script's before
    /// stop 29) is still read. The kind and the checksums are read from the reply's bytes, and numbers by
    /// `RedisValue.int`, which reads digits in place: through `String` and `Int64(_:)` the three readings
    /// cost ~7,300 instructions per commit of one push, ~4 % of the doc loop's share (callgrind, issue 8).
    static func reply(of reply: RedisValue) throws -> CommitReply {
        if case .bulkString(let bytes) = reply, let parsed = okText(bytes) { return parsed }
        guard case .array(let parts) = reply, parts.count >= 2, let number = number(parts[1]) else {
            throw SyncStoreError.unexpectedReply("\(reply)")
        }
        if isText(parts[0], "ok") {
            let outcome = CommitBatchOutcome.committed(firstClock: number, atMs: parts.count > 2 ? Self.number(parts[2]) ?? 0 : 0)
            var sums: [DocChecksum] = []
            if parts.count > 3, case .array(let hexes) = parts[3] {
                sums.reserveCapacity(hexes.count)
                for k in hexes.indices {
                    if let sum = hexes[k].bytes.flatMap(DocChecksum.init(hexUTF8:)) { sums.append(sum) }
                }
            }
            let published = parts.count > 4 ? parts[4].int != 0 : true
            return (outcome, sums, published)
        }
        return (try failedOutcome(parts, head: number, reply: reply), [], true)
    }

    /// The 'ok' reply in its text form (stop 29; a table cost Redis ~9,000 instructions more to send):
    /// `ok FIRST AT PUBLISHED[ SUM…]`, single spaces, PUBLISHED 1|0, each SUM 16 hex digits. nil for
    /// anything else.
    static func okText(_ bytes: [UInt8]) -> (outcome: CommitBatchOutcome, sums: [DocChecksum], published: Bool)? {
        guard bytes.count >= 8, bytes[0] == UInt8(ascii: "o"), bytes[1] == UInt8(ascii: "k"), bytes[2] == UInt8(ascii: " ") else {
            return nil
        }
        var i = 3
        guard let firstRange = field(bytes, &i), let first = decimal(bytes, firstRange), let atRange = field(bytes, &i),
            let at = decimal(bytes, atRange), let flag = field(bytes, &i), flag.count == 1
        else { return nil }
        let published: Bool
        switch bytes[flag.lowerBound] {
        case UInt8(ascii: "0"): published = false
        case UInt8(ascii: "1"): published = true
        default: return nil
        }
        var sums: [DocChecksum] = []
        if i < bytes.count {
            sums.reserveCapacity((bytes.count - i + 1) / (DocChecksum.hexLength + 1))
            while let range = field(bytes, &i) {
                let sum = bytes.withUnsafeBufferPointer { DocChecksum(hexBytes: UnsafeBufferPointer(rebasing: $0[range])) }
                guard let sum else { return nil }
                sums.append(sum)
            }
        }
        guard i == bytes.count, bytes[bytes.count - 1] != UInt8(ascii: " ") else { return nil }
        return (.committed(firstClock: first, atMs: at), sums, published)
    }

    /// The bounds of the field at `i` (up to a space or the end; nil if empty or at the end), moving `i`
    /// past it and its space.
    private static func field(_ bytes: [UInt8], _ i: inout Int) -> Range<Int>? {
        guard i < bytes.count else { return nil }
        let start = i
        while i < bytes.count && bytes[i] != UInt8(ascii: " ") { i += 1 }
        let range = start..<i
        if i < bytes.count { i += 1 }
        return range.isEmpty ? nil : range
    }

    /// Plain decimal digits (at most 19: no overflow), nil otherwise.
    private static func decimal(_ bytes: [UInt8], _ range: Range<Int>) -> UInt64? {
        guard range.count <= 19 else { return nil }
        var value: UInt64 = 0
        for k in range {
            let digit = bytes[k] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + UInt64(digit)
        }
        return value
    }

    /// A reply other than 'ok' (`head`: its 2nd element).
    private static func failedOutcome(_ parts: [RedisValue], head number: UInt64, reply: RedisValue) throws -> CommitBatchOutcome {
        switch parts[0].string {
        case "conflict":
            return .conflict(head: number)
        case "too_large":
            return .tooLarge(head: number, records: parts.count > 2 ? Int(Self.number(parts[2]) ?? 0) : 0)
        case "duplicate":
            let flat = parts.count > 2 ? parts[2].array ?? [] : []
            var clocks: [Int: UInt64] = [:]
            for i in stride(from: 0, to: flat.count - 1, by: 2) {
                guard let index = Self.number(flat[i]), let clock = Self.number(flat[i + 1]) else {
                    throw SyncStoreError.unexpectedReply("\(reply)")
                }
                clocks[Int(index)] = clock
            }
            return .duplicate(head: number, clocks: clocks)
        default:
            throw SyncStoreError.unexpectedReply("\(reply)")
        }
    }

    /// A simple or bulk string equal to `text` (ASCII), compared without making a `String`.
    private static func isText(_ value: RedisValue, _ text: StaticString) -> Bool {
        switch value {
        case .bulkString(let bytes):
            guard bytes.count == text.utf8CodeUnitCount else { return false }
            for k in bytes.indices where bytes[k] != text.utf8Start[k] { return false }
            return true
        case .simpleString(let string):
            return string == String(describing: text)
        default:
            return false
        }
    }

    private static func number(_ value: RedisValue) -> UInt64? {
        if let int = value.int, int >= 0 { return UInt64(int) }
        return value.string.flatMap { UInt64($0) }
    }

    /// The commits of one stream entry: a classic single-commit entry, or a batch entry (id = last clock,
    /// fields `n`, `node`, `at`, `b`).
    static func notices(fromStreamEntry entry: RedisValue) -> [CommitNotice] {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
            let last = id.split(separator: "-").first.flatMap({ UInt64($0) })
        else { return [] }
        var fields: [String: [UInt8]] = [:]
        let items = parts[1].array ?? []
        for i in stride(from: 0, to: items.count - 1, by: 2) {
            guard let key = items[i].string, let value = items[i + 1].bytes else { continue }
            fields[key] = value
        }
        guard let batch = fields["b"] else { return notice(fromStreamEntry: entry).map { [$0] } ?? [] }
        func text(_ key: String) -> String? { fields[key].map { String(decoding: $0, as: UTF8.self) } }
        guard let n = text("n").flatMap({ UInt64($0) }), n >= 1, n <= last, let node = text("node"),
            let members = try? JSONParser.parse(batch, maxDepth: SyncStore.maxStoredJSONDepth),
            let notices = CommitNotice.batch(members, first: last - n + 1, node: node, atMs: text("at").flatMap { UInt64($0) } ?? 0),
            notices.count == Int(n)
        else { return [] }
        return notices
    }
}
