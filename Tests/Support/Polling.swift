import Foundation

/// Thrown by ``waitUntil(_:timeout:poll:fileID:line:isolation:_:)`` when the condition never held.
public struct WaitTimeoutError: Error, CustomStringConvertible {
    /// What was awaited, as the caller described it (evaluated when the wait gave up).
    public let message: String
    public let timeout: Duration
    /// `file:line` of the `waitUntil` call.
    public let location: String

    public var description: String {
        "timed out after \(self.timeout) waiting for: \(self.message) (at \(self.location))"
    }
}

/// How much longer than written every test timeout is: `TANDEM_TEST_TIMEOUT_SCALE` (a whole number, default 1).
///
/// The sanitizer runs set it (scripts/test-sanitizers.sh): ThreadSanitizer makes the node several times
/// slower, and the tests that push megabytes through it to fill a socket (the slow-consumer tests) then
/// need more than the time they were written for. Timeouts bound waits for conditions; none is a
/// performance assertion, so scaling them changes no verdict except "too slow to tell".
public enum TestTimeouts {
    public static let scale: Int = {
        guard let text = ProcessInfo.processInfo.environment["TANDEM_TEST_TIMEOUT_SCALE"], let value = Int(text),
            value >= 1
        else { return 1 }
        return value
    }()

    /// `timeout` stretched by ``scale``.
    public static func scaled(_ timeout: Duration) -> Duration { timeout * scale }
}

/// Polls `condition` until it returns `true`, or throws ``WaitTimeoutError`` after `timeout`
/// (times ``TestTimeouts/scale``).
///
/// Use this instead of sleeping: it returns as soon as the condition holds, and a condition that
/// never holds fails the test with `message` instead of hanging it. `message` is an autoclosure
/// evaluated only on timeout, so it can show the state at that moment:
///
/// ```swift
/// try await waitUntil("server saw 3 messages, saw \(server.count)") { server.count == 3 }
/// ```
///
/// The condition runs at least once, even with a zero timeout. An error it throws ends the wait
/// at once; so does cancellation of the calling task.
public func waitUntil(
    _ message: @autoclosure () -> String = "condition",
    timeout: Duration = .seconds(10),
    poll: Duration = .milliseconds(20),
    fileID: String = #fileID,
    line: Int = #line,
    isolation: isolated (any Actor)? = #isolation,
    _ condition: () async throws -> Bool
) async throws {
    let timeout = TestTimeouts.scaled(timeout)
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        if try await condition() {
            return
        }
        if clock.now >= deadline {
            throw WaitTimeoutError(message: message(), timeout: timeout, location: "\(fileID):\(line)")
        }
        try await Task.sleep(for: poll)
    }
}
