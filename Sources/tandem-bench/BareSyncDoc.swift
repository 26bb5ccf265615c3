import NIOConcurrencyHelpers
import NIOCore
import TandemRedis

#if canImport(Glibc)
import Glibc
#endif

// The docs of `tandem-bench bare-sync-server` (issue 8's yardstick; see BareSyncServer.swift): per doc, the
// members, the pushes waiting, and one group commit in flight at a time.

/// One shard per event loop; a doc lives on the shard its name hashes to (as Tandem's doc shards).
final class BareSyncShards: Sendable {
    let shards: [BareSyncShard]
    private let sessions = NIOLockedValueBox<UInt64>(0)

    init(loops: [any EventLoop], redis: RedisClient, maxBatch: Int) {
        // Keys of this process only: clocks start at 0 whatever an earlier run left in Redis.
        let prefix = "bare-sync:\(getpid()).\(monotonicNanos())"
        shards = loops.map { BareSyncShard(loop: $0, redis: redis, maxBatch: maxBatch, keyPrefix: prefix) }
    }

    func shard(for doc: String) -> BareSyncShard { shards[bareShardIndex(of: doc, count: shards.count)] }

    /// As long as Tandem's session ids (22 characters): every patch carries the pusher's.
    func nextSessionID() -> String { bareSessionID(sessions.withLockedValue { $0 += 1; return $0 }) }
}

/// The docs of one loop.
final class BareSyncShard: @unchecked Sendable {  // @unchecked: `docs` is touched on `loop` only
    let loop: any EventLoop
    let redis: RedisClient
    let maxBatch: Int
    let keyPrefix: String
    private var docs: [String: BareSyncDoc] = [:]

    init(loop: any EventLoop, redis: RedisClient, maxBatch: Int, keyPrefix: String) {
        self.loop = loop
        self.redis = redis
        self.maxBatch = maxBatch
        self.keyPrefix = keyPrefix
    }

    /// On `loop`: the doc named `name`, made on first use.
    func doc(_ name: String) -> BareSyncDoc {
        if let doc = docs[name] { return doc }
        let doc = BareSyncDoc(name: name, shard: self)
        docs[name] = doc
        return doc
    }
}

/// One doc: its members, the pushes waiting for the next group commit, and the clock delivered so far.
/// Confined to its shard's loop.
final class BareSyncDoc: @unchecked Sendable {  // @unchecked: used on its shard's loop only
    /// The group commit: appends the batch's entries to the doc's log and advances its clock by as many,
    /// returning the new clock (the batch's last). The log is written first: a write that fails leaves
    /// the clock where it was, so clocks stay gapless.
    static let script = RedisScript(
        """
        redis.call('RPUSH', KEYS[1], unpack(ARGV))
        return redis.call('INCRBY', KEYS[2], #ARGV)
        """)

    let name: String
    private unowned let shard: BareSyncShard
    /// `2`, the log key, the clock key: the start of every script call's arguments, encoded once.
    private let keys: RedisEncodedArguments
    /// `{"t":"result","doc":"NAME","id":` and `{"t":"patch","doc":"NAME","clock":`.
    private let resultHead: ByteBuffer
    private let patchHead: ByteBuffer
    /// The last clock whose results and patches went out (what a joiner is told).
    private var clock: Int64 = 0
    private var members: [BareSyncConnection] = []
    /// Members by event loop (rebuilt after a join or leave).
    private var groups: [(any EventLoop, [BareSyncConnection])]?
    private var waiting: [BareSyncPush] = []
    private var committing = false

    init(name: String, shard: BareSyncShard) {
        self.name = name
        self.shard = shard
        let base = shard.keyPrefix + ":{" + name + "}:"
        keys = RedisEncodedArguments { e in
            e.write(Int(2))
            e.write(base + "log")
            e.write(base + "clock")
        }
        var r = ByteBuffer()
        r.writeString(#"{"t":"result","doc":""# + name + #"","id":"#)
        resultHead = r
        var p = ByteBuffer()
        p.writeString(#"{"t":"patch","doc":""# + name + #"","clock":"#)
        patchHead = p
    }

    /// A member from now on: `joined` at the clock delivered so far, then an empty snapshot ending the
    /// catch-up (this relay keeps no records); every later clock reaches it.
    func join(_ connection: BareSyncConnection) {
        if !members.contains(where: { $0 === connection }) {
            members.append(connection)
            groups = nil
        }
        let quoted = #""doc":""# + name + #"","#
        let joined = BareFrame.text(#"{"t":"joined","# + quoted + #""role":"editor","clock":\#(clock),"presence":[]}"#)
        let snapshot = BareFrame.text(#"{"t":"snapshot","# + quoted + #""clock":\#(clock),"records":{},"more":false}"#)
        connection.loop.execute {
            connection.deliver(joined, answers: false)
            connection.deliver(snapshot, answers: false)
            connection.flush()
        }
    }

    func leave(_ connection: BareSyncConnection) {
        guard let at = members.firstIndex(where: { $0 === connection }) else { return }
        members.remove(at: at)
        groups = nil
    }

    /// A read burst's pushes: committed with the next group commit (at once if none is in flight).
    func received(_ pushes: [BareSyncPush]) {
        waiting.append(contentsOf: pushes)
        if !committing { commit() }
    }

    /// Sends every waiting push (up to the batch limit) in one script call; the reply comes back to this loop.
    private func commit() {
        guard !waiting.isEmpty else { return }
        let batch: [BareSyncPush]
        if waiting.count <= shard.maxBatch {
            batch = waiting
            waiting.removeAll(keepingCapacity: true)
        } else {
            batch = Array(waiting.prefix(shard.maxBatch))
            waiting.removeFirst(shard.maxBatch)
        }
        committing = true
        let bytes = batch.reduce(0) { $0 + $1.ops.readableBytes + 16 }
        let command = RedisCommand(evalSHA: Self.script, capacity: bytes + 128) { e in
            e.write(encoded: keys)
            for push in batch {
                push.ops.withUnsafeReadableBytes { e.appendBulkString($0.bindMemory(to: UInt8.self)) }
            }
        }
        let loop = shard.loop
        shard.redis.send(command) { result in
            // On the Redis client's thread: only the hop.
            loop.execute { self.replied(result, batch) }
        }
    }

    private func replied(_ result: Result<RedisValue, RedisError>, _ batch: [BareSyncPush]) {
        committing = false
        guard case .success(let value) = result, let last = value.int else {
            // Redis failed: nothing is acknowledged; the pushers retry.
            for push in batch { push.from.loop.execute { push.from.refused(id: push.id) } }
            commit()
            return
        }
        // Taken as Redis says, even past a gap (a call that timed out but ran): the clients count the gap.
        clock = last
        deliver(batch, firstClock: last - Int64(batch.count) + 1)
        commit()
    }

    /// Results to the pushers and patches to everyone else, in clock order: one hop and one flush per
    /// member's loop. A pusher no longer (or never) a member gets its result on its own.
    private func deliver(_ batch: [BareSyncPush], firstClock: Int64) {
        var results: [ByteBuffer] = []
        var patches: [ByteBuffer] = []
        results.reserveCapacity(batch.count)
        patches.reserveCapacity(batch.count)
        for (i, push) in batch.enumerated() {
            let clock = firstClock + Int64(i)
            var r = BareFrame.start(capacity: resultHead.readableBytes + push.id.readableBytes + 48)
            r.writeImmutableBuffer(resultHead)
            r.writeImmutableBuffer(push.id)
            r.writeStaticString(#","action":"commit","clock":"#)
            r.writeDecimal(Int(clock))
            r.writeStaticString("}")
            results.append(BareFrame.finish(r))
            var p = BareFrame.start(
                capacity: patchHead.readableBytes + push.ops.readableBytes + push.from.byField.readableBytes + push.id.readableBytes + 32)
            p.writeImmutableBuffer(patchHead)
            p.writeDecimal(Int(clock))
            p.writeStaticString(#","ops":"#)
            p.writeImmutableBuffer(push.ops)
            p.writeImmutableBuffer(push.from.byField)
            p.writeImmutableBuffer(push.id)
            p.writeStaticString("}")
            patches.append(BareFrame.finish(p))
        }
        let (resultFrames, patchFrames) = (results, patches)
        for (loop, group) in memberGroups() {
            loop.execute {
                for (i, push) in batch.enumerated() {
                    for m in group { m.deliver(m === push.from ? resultFrames[i] : patchFrames[i], answers: m === push.from) }
                }
                for m in group { m.flush() }
            }
        }
        for (i, push) in batch.enumerated() where !members.contains(where: { $0 === push.from }) {
            let result = resultFrames[i]
            push.from.loop.execute {
                push.from.deliver(result, answers: true)
                push.from.flush()
            }
        }
    }

    private func memberGroups() -> [(any EventLoop, [BareSyncConnection])] {
        if let groups { return groups }
        var byLoop: [ObjectIdentifier: (any EventLoop, [BareSyncConnection])] = [:]
        for m in members { byLoop[ObjectIdentifier(m.loop), default: (m.loop, [])].1.append(m) }
        let made = Array(byLoop.values)
        groups = made
        return made
    }
}
