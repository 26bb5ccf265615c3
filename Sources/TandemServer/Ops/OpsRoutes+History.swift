import Foundation
import NIOCore
import TandemCore
import TandemOpsHTTP
import TandemRedis

/// The history routes of the ops plane (issue 15, docs/history.md): `/at`, `/versions` (reads) and
/// `/restore`, `/fork` (POST, `--ops-token` required). Each request does bounded work: one history read
/// replays at most one checkpoint interval (`HistoryStore`'s bounds; beyond them 503 `busy`), a version
/// page holds at most `OpsRoute.maxVersionsLimit` entries, and JSON is encoded on the ops thread.
extension OpsRoutes {
    /// Session and node names history writes carry: not a client session, and not this node's name (nodes
    /// skip their own commits on pub/sub, and every node, this one too, must apply a restore).
    static let restoreSession = "ops-restore"
    static let forkSession = "ops-fork"
    var historyWriterNode: String { node.config.nodeID + "/ops" }

    func historyRoute(_ route: OpsRoute, _ responder: OpsResponder) {
        switch route {
        case .docAt(let doc, .clock(let clock)):
            node.history.metrics.read("at")
            stateResponse(doc, clock: clock, responder)
        case .docAt(let doc, .time(let time)):
            node.history.metrics.read("time")
            node.history.clock(doc: doc, atTime: time, on: loop).whenComplete { result in
                switch result {
                case .success(let clock): stateResponse(doc, clock: clock, responder)
                case .failure(let error): responder.respond(historyFailure(error))
                }
            }
        case .docVersions(let doc, let before, let limit):
            node.history.metrics.read("versions")
            versions(doc, before: before, limit: limit, responder)
        case .docRestore(let doc, let clock):
            node.history.metrics.read("restore")
            restore(doc, clock: clock, attempt: 0, responder)
        case .docFork(let doc, let clock, let to):
            node.history.metrics.read("fork")
            fork(doc, clock: clock, to: to, responder)
        default:
            responder.respond(.jsonError(status: 404, code: "not_found", message: "no such history route"))
        }
    }

    /// The JSON error for a failed history read.
    func historyFailure(_ error: Error) -> OpsResponse {
        switch error {
        case HistoryStore.ReadFailure.unknownDoc:
            return .jsonError(status: 404, code: "unknown_doc", message: "no such doc (it has no commits)")
        case HistoryStore.ReadFailure.beyond(let head):
            return .jsonError(status: 400, code: "beyond_head", message: "the doc's head is clock \(head)")
        case HistoryStore.ReadFailure.missing(let head, let oldest):
            let start = oldest.map { "; it starts at clock \($0)" } ?? ""
            return .jsonError(status: 404, code: "not_in_history", message: "that point is not in the doc's history (head \(head)\(start))")
        case HistoryStore.ReadFailure.busy:
            return .jsonError(status: 503, code: "busy", message: "the history is not sealed that far yet; retry in a few seconds")
        case HistoryStore.ReadFailure.corrupt(let why):
            return .jsonError(status: 500, code: "corrupt_history", message: why)
        default:
            return readFailed(error)
        }
    }

    private func stateResponse(_ doc: String, clock: UInt64, _ responder: OpsResponder) {
        node.history.state(doc: doc, at: clock, on: loop).whenComplete { result in
            switch result {
            case .success(let state):
                responder.respond(building: {
                    var w = JSONWriter(capacity: 256 + state.replica.records.count * 64)
                    w.openObject()
                    w.key("doc"); w.string(doc); w.comma()
                    w.key("clock"); w.integer(clock); w.comma()
                    w.key("at"); w.integer(state.atMs); w.comma()
                    w.key("head"); w.integer(state.head); w.comma()
                    w.key("records"); w.write(.object(state.replica.records))
                    w.closeObject()
                    return .json(w.bytes)
                })
            case .failure(let error):
                responder.respond(historyFailure(error))
            }
        }
    }

    private func versions(_ doc: String, before: UInt64?, limit: Int, _ responder: OpsResponder) {
        // One more than asked, to say whether there are more.
        node.history.versions(doc: doc, before: before ?? OpsRoute.maxClock + 1, limit: limit + 1, on: loop).whenComplete { result in
            switch result {
            case .success(let (head, list)):
                responder.respond(building: {
                    var w = JSONWriter(capacity: 128 + list.count * 128)
                    w.openObject()
                    w.key("doc"); w.string(doc); w.comma()
                    w.key("head"); w.integer(head); w.comma()
                    w.key("versions"); w.array(list.prefix(limit)) { w, version in w.raw(version.json) }; w.comma()
                    w.key("more"); w.bool(list.count > limit)
                    w.closeObject()
                    return .json(w.bytes)
                })
            case .failure(let error):
                responder.respond(historyFailure(error))
            }
        }
    }

    /// Restore: one ordinary commit that turns the current state into the state at `clock`, checked
    /// against the records' versions like any push (a commit in between: read again, at most 3 times).
    private func restore(_ doc: String, clock: UInt64, attempt: Int, _ responder: OpsResponder) {
        let (loop, history, sync) = (self.loop, node.history, node.syncStore)
        let maxBytes = Self.maxRewriteBytes(node.config)
        history.state(doc: doc, at: clock, on: loop).and(sync.load(doc: doc, on: loop)).flatMap { target, current -> EventLoopFuture<OpsResponse> in
            let replica = current.replica
            guard
                let batch = HistoryReplay.restoreBatch(
                    current: replica, target: target.replica.records, sessionID: Self.restoreSession,
                    pushID: .string("restore-\(UUID().uuidString)"))
            else {
                return loop.makeSucceededFuture(.json(Self.restoreBody(doc: doc, clock: clock, committed: nil, head: replica.head)))
            }
            guard batch.bytes <= maxBytes else {
                return loop.makeSucceededFuture(
                    .jsonError(status: 413, code: "too_large", message: "the restore would be one commit of \(batch.bytes) bytes; the limit is \(maxBytes)"))
            }
            return sync.commit(doc: doc, batch: batch, node: historyWriterNode, on: loop).map { outcome in
                switch outcome {
                case .committed(let first, _):
                    return .json(Self.restoreBody(doc: doc, clock: clock, committed: first, head: first))
                case .conflict:
                    return .jsonError(status: 409, code: "conflict", message: "the doc changed during the restore")
                case .tooLarge(_, let records):
                    return .jsonError(status: 413, code: "too_large", message: "the restored doc would hold \(records) records (--max-doc-records)")
                case .duplicate, .failed:
                    return .jsonError(status: 503, code: "unavailable", message: "the restore was not committed; retry it")
                }
            }
        }.whenComplete { result in
            switch result {
            case .success(let response) where response.status == 409 && attempt < 2:
                restore(doc, clock: clock, attempt: attempt + 1, responder)
            case .success(let response):
                responder.respond(response)
            case .failure(let error):
                responder.respond(historyFailure(error))
            }
        }
    }

    static func restoreBody(doc: String, clock: UInt64, committed: UInt64?, head: UInt64) -> [UInt8] {
        var w = JSONWriter()
        w.openObject()
        w.key("doc"); w.string(doc); w.comma()
        w.key("restoredFrom"); w.integer(clock); w.comma()
        if let committed { w.key("clock"); w.integer(committed); w.comma() }
        w.key("changed"); w.bool(committed != nil); w.comma()
        w.key("head"); w.integer(head)
        w.closeObject()
        return w.bytes
    }

    /// Largest commit a restore or fork writes: the doc-sized commit a push could never be.
    static func maxRewriteBytes(_ config: ServerConfiguration) -> Int {
        max(config.maxPushBytes, config.maxBatchBytes, 64 << 20)
    }

    private func fork(_ doc: String, clock: UInt64, to: String, _ responder: OpsResponder) {
        let (loop, history, redis, config) = (self.loop, node.history, node.redis, node.config)
        let writer = historyWriterNode
        history.state(doc: doc, at: clock, on: loop).flatMap { state -> EventLoopFuture<OpsResponse> in
            let records = state.replica.records
            let ops = JSONValue.object(records.mapValues { .array([.string("put"), $0]) })
            let encoded = ops.serialized
            let maxBytes = Self.maxRewriteBytes(config)
            guard encoded.count <= maxBytes else {
                return loop.makeSucceededFuture(
                    .jsonError(status: 413, code: "too_large", message: "the fork's first commit would be \(encoded.count) bytes; the limit is \(maxBytes)"))
            }
            let note = JSONValue.object(["forkOf": .string(doc), "clock": .number(clock)]).serialized
            var args: [any RedisArgument] = [
                max(config.docTTLMs, 0), writer, Self.forkSession, note, String(NodeClock().wallMs()), encoded,
            ]
            for (id, value) in records.sorted(by: { $0.key < $1.key }) {
                args.append(id)
                args.append(value.serialized)
            }
            return redis.evalScript(HistoryWriteScripts.fork, keys: GroupCommitScript.keys(to), args: args, on: loop).map { reply in
                let parts = reply.array ?? []
                if parts.first?.string == "exists" {
                    return .jsonError(status: 409, code: "doc_exists", message: "the doc \(to) exists; fork onto a new id")
                }
                var w = JSONWriter()
                w.openObject()
                w.key("doc"); w.string(to); w.comma()
                w.key("forkOf"); w.string(doc); w.comma()
                w.key("clock"); w.integer(clock); w.comma()
                w.key("head"); w.integer(1); w.comma()
                w.key("records"); w.integer(records.count)
                w.closeObject()
                return .json(w.bytes, status: 201)
            }
        }.whenComplete { result in
            switch result {
            case .success(let response): responder.respond(response)
            case .failure(let error): responder.respond(historyFailure(error))
            }
        }
    }
}
