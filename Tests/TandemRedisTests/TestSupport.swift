import Foundation
import NIOConcurrencyHelpers
import NIOCore
import TandemRedis
import TandemTestSupport

/// Runs blocking work (spawning processes, redis-cli, waiting for exits) on a thread of its own, so it
/// never holds a thread of the cooperative pool, or of Dispatch's global queues that the pool shares on
/// Linux (two threads on a 2-core machine), which every async test needs.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// Non-throwing variant of ``blocking(_:)``.
func blocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: body()) }
    }
}

/// Starts a redis-server child (see `RedisServerProcess`) without blocking the cooperative pool.
func startServer(extraArguments: [String] = [], unixSocket: Bool = false) async throws -> RedisServerProcess {
    try await blocking { try RedisServerProcess(extraArguments: extraArguments, unixSocket: unixSocket) }
}

/// `redis-cli -p PORT arguments...` without blocking the cooperative pool.
@discardableResult
func cli(_ server: RedisServerProcess, _ arguments: String...) async -> String {
    await blocking { server.command(arguments: arguments) }
}

/// `#expect(await waitUntil { … })`: TandemTestSupport's `waitUntil` (the one polling loop), polling every
/// 5 ms and answering whether the condition held within `timeout`. Tests assert on conditions, never on
/// elapsed time; the timeout only bounds a hang. The condition must be cheap and non-blocking (use
/// ``waitUntilBlocking(timeout:_:)`` for redis-cli checks).
func waitUntil(timeout: Duration = .seconds(15), _ condition: () -> Bool) async -> Bool {
    (try? await TandemTestSupport.waitUntil(timeout: timeout, poll: .milliseconds(5), condition)) != nil
}

/// Like ``waitUntil(timeout:_:)`` for a condition that blocks (runs redis-cli): each check runs on a
/// thread of its own.
func waitUntilBlocking(timeout: Duration = .seconds(15), _ condition: @escaping @Sendable () -> Bool) async -> Bool {
    (try? await TandemTestSupport.waitUntil(timeout: timeout, poll: .milliseconds(5)) { await blocking(condition) }) != nil
}

/// A thread-safe list that hooks and callbacks append to from the owner thread.
final class Recorder<Element: Sendable>: Sendable {
    private let box = NIOLockedValueBox<[Element]>([])

    func append(_ element: Element) { box.withLockedValue { $0.append(element) } }
    func append(contentsOf elements: [Element]) { box.withLockedValue { $0.append(contentsOf: elements) } }
    var values: [Element] { box.withLockedValue { $0 } }
    var count: Int { box.withLockedValue { $0.count } }
}

/// Fast settings for tests: short backoff so restarts are picked up quickly.
func testSettings() -> RedisConnectionSettings {
    var settings = RedisConnectionSettings()
    settings.reconnectInitialDelay = .milliseconds(10)
    settings.reconnectMaxDelay = .milliseconds(200)
    return settings
}

/// Makes and starts a client for `url` with test settings, then lets `configure` adjust it.
func startedClient(
    _ url: String,
    configure: (inout RedisClient.Configuration) -> Void = { _ in }
) throws -> RedisClient {
    var configuration = RedisClient.Configuration(endpoint: try RedisEndpoint(url: url))
    configuration.connection = testSettings()
    configure(&configuration)
    let client = RedisClient(configuration: configuration)
    client.start()
    return client
}

/// Sends through the callback API and waits for the result.
func sendViaCallback(_ client: RedisClient, _ command: RedisCommand) async -> Result<RedisValue, RedisError> {
    await withCheckedContinuation { continuation in
        client.send(command) { continuation.resume(returning: $0) }
    }
}

/// The value of `field` in `INFO` output (`field:value` lines).
func infoField(_ info: String, _ field: String) -> String? {
    for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("\(field):") {
        return String(line.dropFirst(field.count + 1))
    }
    return nil
}

/// A minimal `EventLoop` on a serial `DispatchQueue`, enough to test the future API: this test target
/// depends on TandemRedis (and so NIOCore) but not on NIOPosix or NIOEmbedded.
final class QueueEventLoop: EventLoop {
    private let queue = DispatchQueue(label: "tandem.redis.tests.event-loop")
    private let key = DispatchSpecificKey<Bool>()

    init() {
        queue.setSpecific(key: key, value: true)
    }

    var inEventLoop: Bool { DispatchQueue.getSpecific(key: key) == true }

    func execute(_ task: @escaping @Sendable () -> Void) {
        queue.async(execute: task)
    }

    // Futures and promises never schedule timers, so the tests need no scheduling.
    func scheduleTask<T>(deadline: NIODeadline, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        fatalError("QueueEventLoop does not schedule tasks")
    }

    func scheduleTask<T>(in delay: TimeAmount, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        fatalError("QueueEventLoop does not schedule tasks")
    }

    func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable (Error?) -> Void) {
        queue.async { callback(nil) }
    }
}
