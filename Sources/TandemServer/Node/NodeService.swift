import NIOConcurrencyHelpers
import ServiceLifecycle

/// One component of a node as a swift-service-lifecycle `Service`: `run()` starts it, waits for the
/// group's graceful shutdown (SIGTERM/SIGINT, or `TandemNode.shutdown()`), then stops it. The node's
/// `ServiceGroup` shuts its services down one at a time in reverse order, each after the one started after
/// it has stopped.
///
/// A `ServiceGroup` starts every service at once; a component that needs the one before it up (the Redis
/// client needs the embedded redis-server, clients must not reach the WebSocket port before the shards
/// tick) waits for that one's `started` step first, so start-up runs in the order of the list too.
struct NodeService: Service, CustomStringConvertible {
    let description: String
    /// Opened once this component has started (failed if it could not).
    let started: StartupStep
    /// The step of the component before it in the start order, if any.
    let after: StartupStep?
    let start: @Sendable () async throws -> Void
    let stop: @Sendable () async -> Void

    func run() async throws {
        do {
            try await after?.wait()
            try await start()
            started.open()
        } catch {
            started.fail(error)
            throw error
        }
        // Cancellation (the group gave up waiting) also ends the wait: stop either way.
        try? await gracefulShutdown()
        await stop()
    }
}

/// A one-shot start-up gate: waiters suspend until it is opened, and throw if it failed.
final class StartupStep: Sendable {
    private enum State {
        case waiting([CheckedContinuation<Void, any Error>])
        case opened
        case failed(any Error)
    }

    /// The start-up step before this one failed, so this component never started.
    struct PreviousStepFailed: Error, CustomStringConvertible {
        var underlying: any Error
        var description: String { "\(underlying)" }
    }

    private let state = NIOLockedValueBox(State.waiting([]))

    func open() { finish(nil) }
    func fail(_ error: any Error) { finish(error) }

    func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let immediate: Result<Void, any Error>? = state.withLockedValue { state in
                switch state {
                case .waiting(let waiters):
                    state = .waiting(waiters + [continuation])
                    return nil
                case .opened: return .success(())
                case .failed(let error): return .failure(PreviousStepFailed(underlying: error))
                }
            }
            if let immediate { continuation.resume(with: immediate) }
        }
    }

    private func finish(_ error: (any Error)?) {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, any Error>] in
            guard case .waiting(let waiters) = state else { return [] }
            state = error.map { .failed($0) } ?? .opened
            return waiters
        }
        for waiter in waiters {
            if let error { waiter.resume(throwing: PreviousStepFailed(underlying: error)) } else { waiter.resume() }
        }
    }
}
