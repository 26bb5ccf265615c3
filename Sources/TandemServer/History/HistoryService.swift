import Foundation
import NIOCore
import TandemCore
import TandemRedis

/// What the ops routes and the protocol do with history (issue 15, docs/history.md): reads through
/// `HistoryStore`, and the two writes — restore (one ordinary commit through the group commit script)
/// and fork (one script that creates the new doc).
final class HistoryService: Sendable {
    let store: HistoryStore
    let syncStore: SyncStore
    let redis: any RedisCommandClient
    /// Commits written by history carry this node name, not the node's own: nodes skip their own commits
    /// on pub/sub (they delivered them from the script's reply), and every node must apply these.
    let writerNode: String
    let docTTLMs: Int64
    /// Largest commit a restore or fork writes (the doc-sized commit no push could be).
    let maxRewriteBytes: Int

    static let restoreSession = "ops-restore"
    static let forkSession = "ops-fork"

    init(store: HistoryStore, syncStore: SyncStore, redis: any RedisCommandClient, config: ServerConfiguration) {
        self.store = store
        self.syncStore = syncStore
        self.redis = redis
        self.writerNode = config.nodeID + "/ops"
        self.docTTLMs = config.docTTLMs
        self.maxRewriteBytes = max(config.maxPushBytes, config.maxBatchBytes, 64 << 20)
    }

    enum WriteFailure: Error, Equatable {
        case conflict
        case tooLarge(String)
        case docExists
        case unavailable
    }

    /// Restores `doc` to its state after `clock`: the clock of the new commit, nil when the doc already is
    /// in that state. A commit in between is read again (three attempts).
    func restore(doc: String, clock: UInt64, on loop: EventLoop, attempt: Int = 0) -> EventLoopFuture<UInt64?> {
        let maxBytes = maxRewriteBytes
        return store.state(doc: doc, at: clock, on: loop).and(syncStore.load(doc: doc, on: loop)).flatMap { target, current in
            guard
                let batch = HistoryReplay.restoreBatch(
                    current: current.replica, target: target.replica.records, sessionID: Self.restoreSession,
                    pushID: .string("restore-\(UUID().uuidString)"))
            else { return loop.makeSucceededFuture(nil) }
            guard batch.bytes <= maxBytes else {
                return loop.makeFailedFuture(WriteFailure.tooLarge("the restore would be one commit of \(batch.bytes) bytes; the limit is \(maxBytes)"))
            }
            return self.syncStore.commit(doc: doc, batch: batch, node: self.writerNode, on: loop).flatMap { outcome in
                switch outcome {
                case .committed(let first, _):
                    return loop.makeSucceededFuture(first)
                case .conflict where attempt < 2:
                    return self.restore(doc: doc, clock: clock, on: loop, attempt: attempt + 1)
                case .conflict:
                    return loop.makeFailedFuture(WriteFailure.conflict)
                case .tooLarge(_, let records):
                    return loop.makeFailedFuture(WriteFailure.tooLarge("the restored doc would hold \(records) records (--max-doc-records)"))
                case .duplicate, .failed:
                    return loop.makeFailedFuture(WriteFailure.unavailable)
                }
            }
        }
    }

    /// Forks `doc` at `clock` into the new doc `to`; the number of records it starts with.
    func fork(doc: String, clock: UInt64, to: String, on loop: EventLoop) -> EventLoopFuture<Int> {
        let (redis, maxBytes, ttl, writer) = (self.redis, maxRewriteBytes, docTTLMs, writerNode)
        return store.state(doc: doc, at: clock, on: loop).flatMap { state in
            let records = state.replica.records
            let encoded = JSONValue.object(records.mapValues { .array([.string("put"), $0]) }).serialized
            guard encoded.count <= maxBytes else {
                return loop.makeFailedFuture(WriteFailure.tooLarge("the fork's first commit would be \(encoded.count) bytes; the limit is \(maxBytes)"))
            }
            let note = JSONValue.object(["forkOf": .string(doc), "clock": .number(clock)]).serialized
            var args: [any RedisArgument] = [max(ttl, 0), writer, Self.forkSession, note, String(NodeClock().wallMs()), encoded]
            for (id, value) in records.sorted(by: { $0.key < $1.key }) {
                args.append(id)
                args.append(value.serialized)
            }
            return redis.evalScript(HistoryWriteScripts.fork, keys: GroupCommitScript.keys(to), args: args, on: loop).flatMapThrowing { reply in
                guard reply.array?.first?.string == "ok" else { throw WriteFailure.docExists }
                return records.count
            }
        }
    }
}
