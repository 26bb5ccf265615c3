import Foundation

/// A value behind a lock, for state a test shares with callbacks on other threads
/// (event-loop callbacks, child tasks).
public final class Locked<Value> {
    private let lock = NSLock()
    private var storage: Value

    public init(_ value: Value) {
        self.storage = value
    }

    /// Runs `body` with exclusive access to the value.
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        self.lock.lock()
        defer { self.lock.unlock() }
        return try body(&self.storage)
    }

    /// A copy of the current value.
    public var value: Value {
        self.withLock { $0 }
    }
}

// @unchecked Sendable: every access to `storage` happens inside `lock`, and the value itself may
// cross threads because it is Sendable.
extension Locked: @unchecked Sendable where Value: Sendable {}
