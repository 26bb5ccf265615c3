import NIOCore
import TandemCore
import TandemOpsHTTP

/// The history routes of the ops plane (issue 15, docs/history.md): `/at`, `/versions` (reads) and
/// `/restore`, `/fork` (POST, `--ops-token` required). Each request does bounded work: one history read
/// replays at most one checkpoint interval (`HistoryStore`'s bounds; beyond them 503 `busy`), a version
/// page holds at most `OpsRoute.maxVersionsLimit` entries, and JSON is encoded on the ops thread.
extension OpsRoutes {
    func historyRoute(_ route: OpsRoute, _ responder: OpsResponder) {
        switch route {
        case .docAt(let doc, .clock(let clock)):
            stores.history.metrics.read("at")
            stateResponse(doc, clock: clock, responder)
        case .docAt(let doc, .time(let time)):
            stores.history.metrics.read("time")
            stores.history.clock(doc: doc, atTime: time, on: loop).whenComplete { result in
                switch result {
                case .success(let clock): stateResponse(doc, clock: clock, responder)
                case .failure(let error): responder.respond(historyFailure(error))
                }
            }
        case .docVersions(let doc, let before, let limit):
            stores.history.metrics.read("versions")
            versions(doc, before: before, limit: limit, responder)
        case .docRestore(let doc, let clock):
            stores.history.metrics.read("restore")
            restore(doc, clock: clock, responder)
        case .docFork(let doc, let clock, let to):
            stores.history.metrics.read("fork")
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
        case HistoryService.WriteFailure.conflict:
            return .jsonError(status: 409, code: "conflict", message: "the doc kept changing during the restore; retry it")
        case HistoryService.WriteFailure.docExists:
            return .jsonError(status: 409, code: "doc_exists", message: "that doc exists; fork onto a new id")
        case HistoryService.WriteFailure.tooLarge(let why):
            return .jsonError(status: 413, code: "too_large", message: why)
        case HistoryService.WriteFailure.unavailable:
            return .jsonError(status: 503, code: "unavailable", message: "the restore was not committed; retry it")
        default:
            return readFailed(error)
        }
    }

    private func stateResponse(_ doc: String, clock: UInt64, _ responder: OpsResponder) {
        stores.history.state(doc: doc, at: clock, on: loop).whenComplete { result in
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
        stores.history.versions(doc: doc, before: before ?? OpsRoute.maxClock + 1, limit: limit + 1, on: loop).whenComplete { result in
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

    private func restore(_ doc: String, clock: UInt64, _ responder: OpsResponder) {
        stores.historyService.restore(doc: doc, clock: clock, on: loop).whenComplete { result in
            switch result {
            case .success(let committed):
                // No node may hold the doc open: this node seals what it wrote (docs/history.md).
                if let committed { self.stores.sealer.wrote(doc, head: committed) }
                var w = JSONWriter()
                w.openObject()
                w.key("doc"); w.string(doc); w.comma()
                w.key("restoredFrom"); w.integer(clock); w.comma()
                if let committed { w.key("clock"); w.integer(committed); w.comma() }
                w.key("changed"); w.bool(committed != nil)
                w.closeObject()
                responder.respond(.json(w.bytes))
            case .failure(let error):
                responder.respond(historyFailure(error))
            }
        }
    }

    private func fork(_ doc: String, clock: UInt64, to: String, _ responder: OpsResponder) {
        stores.historyService.fork(doc: doc, clock: clock, to: to, on: loop).whenComplete { result in
            switch result {
            case .success(let records):
                self.stores.sealer.wrote(to, head: 1)
                var w = JSONWriter()
                w.openObject()
                w.key("doc"); w.string(to); w.comma()
                w.key("forkOf"); w.string(doc); w.comma()
                w.key("clock"); w.integer(clock); w.comma()
                w.key("head"); w.integer(1); w.comma()
                w.key("records"); w.integer(records)
                w.closeObject()
                responder.respond(.json(w.bytes, status: 201))
            case .failure(let error):
                responder.respond(historyFailure(error))
            }
        }
    }
}
