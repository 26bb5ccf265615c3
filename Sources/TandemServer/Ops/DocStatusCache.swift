import NIOConcurrencyHelpers
import NIOCore

/// The shards' doc figures for `/api/status`, computed at most once per `maxAgeMs`, however many status
/// requests come in: the computation walks every doc on every shard's event loop, so a flood of status
/// requests must not turn into a flood of work for the loops that serve clients. Concurrent requests
/// share the computation in flight.
final class DocStatusCache: Sendable {
    private struct State {
        var value: [DocStatus] = []
        var computedAtMs: UInt64?
        var inFlight: EventLoopFuture<[DocStatus]>?
    }

    private let maxAgeMs: UInt64
    private let state = NIOLockedValueBox(State())

    /// Fresh enough for a person watching the status page (it polls once a second), and a dashboard
    /// polled by many viewers asks every shard at most four times a second.
    static let defaultMaxAgeMs: UInt64 = 250

    init(maxAgeMs: UInt64 = DocStatusCache.defaultMaxAgeMs) {
        self.maxAgeMs = maxAgeMs
    }

    /// The docs of every shard, at most `maxAgeMs` old when the computation finishes.
    func docs(shards: [DocShard], nowMs: UInt64, on loop: EventLoop) -> EventLoopFuture<[DocStatus]> {
        enum Next {
            case cached([DocStatus])
            case join(EventLoopFuture<[DocStatus]>)
            case compute(EventLoopPromise<[DocStatus]>)
        }
        let next: Next = state.withLockedValue { state in
            if let at = state.computedAtMs, nowMs >= at, nowMs - at < maxAgeMs { return .cached(state.value) }
            if let inFlight = state.inFlight { return .join(inFlight) }
            let promise = loop.makePromise(of: [DocStatus].self)
            state.inFlight = promise.futureResult
            return .compute(promise)
        }
        switch next {
        case .cached(let docs):
            return loop.makeSucceededFuture(docs)
        case .join(let future):
            return future.hop(to: loop)
        case .compute(let promise):
            let computed = EventLoopFuture.whenAllSucceed(shards.map { $0.status() }, on: loop).map { $0.flatMap { $0 } }
            computed.whenComplete { result in
                self.state.withLockedValue { state in
                    state.inFlight = nil
                    if case .success(let docs) = result {
                        // Without the connections: the cache may sit until the next status request, and
                        // must not keep closed connections alive meanwhile.
                        state.value = docs.map { doc in
                            var doc = doc
                            doc.memberConnections = []
                            return doc
                        }
                        state.computedAtMs = nowMs
                    }
                }
            }
            promise.completeWith(computed)
            return promise.futureResult
        }
    }
}
