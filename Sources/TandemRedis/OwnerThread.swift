import Foundation
import NIOConcurrencyHelpers

/// A dedicated thread that runs one connection's loop, and a way to wait for it to end.
final class OwnerThread: Sendable {
    /// `true` once the body has returned; sync joiners wait on it.
    private let finished = ConditionLock(value: false)
    /// Async joiners waiting for the body to return; `nil` once it has. Protected by the box's lock.
    private let asyncWaiters = NIOLockedValueBox<[CheckedContinuation<Void, Never>]?>([])
    /// `pthread_self()` of the owner thread (as an integer), so `join()` can refuse to deadlock.
    private let threadID = NIOLockedValueBox<UInt?>(nil)

    private init() {}

    /// Starts a thread running `body`.
    static func start(name: String, body: @escaping @Sendable () -> Void) -> OwnerThread {
        let owner = OwnerThread()
        let thread = Thread { [owner] in
            owner.threadID.withLockedValue { $0 = currentThreadID() }
            body()
            owner.finished.lock()
            owner.finished.unlock(withValue: true)
            let waiters = owner.asyncWaiters.withLockedValue { waiters in
                defer { waiters = nil }
                return waiters ?? []
            }
            for waiter in waiters { waiter.resume() }
        }
        thread.name = name
        thread.start()
        return owner
    }

    /// Whether the caller is running on this owner thread (e.g. inside a completion callback).
    var isCurrent: Bool {
        threadID.withLockedValue { $0 == currentThreadID() }
    }

    /// Blocks until the body has returned. Returns at once when called on the owner thread itself,
    /// which cannot wait for its own end. Do not call from an event loop or the cooperative pool.
    func join() {
        if isCurrent { return }
        finished.lock(whenValue: true)
        finished.unlock()
    }

    /// Suspends until the body has returned, without blocking a thread.
    func join() async {
        if isCurrent { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let alreadyDone = asyncWaiters.withLockedValue { waiters -> Bool in
                guard waiters != nil else { return true }
                waiters!.append(continuation)
                return false
            }
            if alreadyDone { continuation.resume() }
        }
    }
}

/// `pthread_self()` as an integer: on Linux `pthread_t` already is one, on Darwin it is a pointer.
private func currentThreadID() -> UInt {
    #if canImport(Darwin)
    UInt(bitPattern: pthread_self())
    #else
    UInt(pthread_self())
    #endif
}

/// Start-once / stop-once bookkeeping for an object that owns an ``OwnerThread``.
final class OwnerThreadLifecycle: Sendable {
    private enum State {
        case idle
        case running(OwnerThread)
        case stopped(OwnerThread?)
    }

    /// Protected by the box's lock; only ever moves idle → running → stopped (or idle → stopped).
    private let state = NIOLockedValueBox(State.idle)

    /// Starts the thread unless it was started or stopped before. Returns whether it started.
    @discardableResult
    func start(name: String, body: @escaping @Sendable () -> Void) -> Bool {
        state.withLockedValue { state in
            guard case .idle = state else { return false }
            state = .running(OwnerThread.start(name: name, body: body))
            return true
        }
    }

    /// Marks the lifecycle stopped and returns the thread to join, if one was ever started.
    func stop() -> OwnerThread? {
        state.withLockedValue { state in
            switch state {
            case .idle:
                state = .stopped(nil)
                return nil
            case .running(let thread), .stopped(let thread?):
                state = .stopped(thread)
                return thread
            case .stopped(nil):
                return nil
            }
        }
    }
}
