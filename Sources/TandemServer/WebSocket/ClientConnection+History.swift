import NIOCore
import TandemCore

/// Version history in protocol v1 (issue 15, docs/protocol.md "Version history"): `history` and `at` for
/// any member (viewers too), `restore` for editors. One request at a time per connection — each costs a
/// Redis read and a replay of up to `--checkpoint-every` commits — and `at` is answered in chunks through
/// the sync queue, so it counts against `--max-outbound-bytes` like a snapshot. Runs on the connection's
/// event loop; decoding and replay run on the thread pool (`HistoryStore`).
extension ClientConnection {
    func serveHistory(_ message: ClientMessage, doc: String, role: Role) {
        guard let history else {
            sendError(ProtocolError(.unavailable, "version history is not available on this node", doc: doc))
            return
        }
        if case .restore = message, role != .editor {
            sendError(ProtocolError(.forbidden, "restoring a version needs editor access", doc: doc))
            return
        }
        let local = confined.value
        guard !local.historyRequestInFlight else {
            sendError(
                ProtocolError(.rateLimited, "one history request at a time: wait for the answer to the last one", doc: doc, retryAfterMs: 100))
            return
        }
        local.historyRequestInFlight = true
        history.store.metrics.read("protocol")
        let loop = eventLoop
        switch message {
        case .history(_, let before, let limit):
            let limit = limit ?? ClientMessage.maxHistoryLimit
            history.store.versions(doc: doc, before: before ?? ClientMessage.maxClock + 1, limit: limit + 1, on: loop)
                .whenComplete { result in
                    self.confined.value.historyRequestInFlight = false
                    switch result {
                    case .success(let (head, versions)):
                        self.send(ServerMessage.history(doc: doc, head: head, versions: Array(versions.prefix(limit)), more: versions.count > limit))
                    case .failure(let error):
                        self.sendError(Self.historyError(error, doc: doc))
                    }
                }
        case .at(_, let clock, let time):
            let resolved = clock.map { loop.makeSucceededFuture($0) } ?? history.store.clock(doc: doc, atTime: time ?? 0, on: loop)
            resolved.flatMap { clock in history.store.state(doc: doc, at: clock, on: loop).map { (clock, $0) } }.whenComplete { result in
                self.confined.value.historyRequestInFlight = false
                switch result {
                case .success(let (clock, state)):
                    let chunker = HistoryStateChunker(doc: doc, clock: clock, atMs: state.atMs, records: state.replica.records)
                    self.deliverSync([.chunks(chunker, CatchUpInfo(doc: doc, isReply: true))])
                case .failure(let error):
                    self.sendError(Self.historyError(error, doc: doc))
                }
            }
        case .restore(_, let clock):
            history.restore(doc: doc, clock: clock, on: loop).whenComplete { result in
                self.confined.value.historyRequestInFlight = false
                switch result {
                case .success(let committed):
                    self.send(ServerMessage.restored(doc: doc, from: clock, committed: committed))
                case .failure(let error):
                    self.sendError(Self.historyError(error, doc: doc))
                }
            }
        default:
            local.historyRequestInFlight = false
        }
    }

    static func historyError(_ error: Error, doc: String) -> ProtocolError {
        switch error {
        case HistoryStore.ReadFailure.unknownDoc:
            return ProtocolError(.badMessage, "the doc has no commits yet", doc: doc)
        case HistoryStore.ReadFailure.beyond(let head):
            return ProtocolError(.badMessage, "that clock is after the doc's head (\(head))", doc: doc)
        case HistoryStore.ReadFailure.missing(_, let oldest):
            return ProtocolError(
                .badMessage, "that point is not in the doc's history" + (oldest.map { "; it starts at clock \($0)" } ?? ""), doc: doc)
        case HistoryStore.ReadFailure.busy:
            return ProtocolError(.unavailable, "the history is not sealed that far yet; retry", doc: doc, retryAfterMs: 1_000)
        case HistoryService.WriteFailure.tooLarge(let why):
            return ProtocolError(.tooLarge, why, doc: doc)
        case HistoryService.WriteFailure.conflict:
            return ProtocolError(.unavailable, "the doc kept changing during the restore; retry it", doc: doc, retryAfterMs: 100)
        case HistoryStore.ReadFailure.corrupt:
            return ProtocolError(.internalError, "the doc's stored history does not decode", doc: doc)
        default:
            return ProtocolError(.unavailable, "Redis is unreachable; retry", doc: doc, retryAfterMs: 1_000)
        }
    }
}
