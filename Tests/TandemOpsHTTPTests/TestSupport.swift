import Foundation
import Logging
import TandemOpsHTTP

/// A value shared between test threads and server handler threads.
/// `@unchecked Sendable`: every access goes through `lock`.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }

    var current: Value { withLock { $0 } }
}

/// Runs `body(i)` for i in 0..<count, each on its own thread, and waits
/// (bounded) for all of them. Returns false if some did not finish in time.
@discardableResult
func runOnThreads(_ count: Int, timeoutSeconds: Double = 30, _ body: @escaping @Sendable (Int) -> Void) -> Bool {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.start()
    }
    return group.wait(timeout: .now() + timeoutSeconds) == .success
}

/// Starts `body` on a background thread; `wait` returns whether it finished.
final class BackgroundWork: @unchecked Sendable {  // state behind DispatchGroup
    private let group = DispatchGroup()

    init(_ body: @escaping @Sendable () -> Void) {
        group.enter()
        let thread = Thread { [group] in
            body()
            group.leave()
        }
        thread.start()
    }

    func wait(timeoutSeconds: Double = 10) -> Bool {
        group.wait(timeout: .now() + timeoutSeconds) == .success
    }
}

/// A log handler that keeps every message, to assert what the server logs.
struct CapturingLogHandler: LogHandler {
    let messages: Locked<[String]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        messages.withLock { $0.append(event.message.description) }
    }
}

func testLogger(capturing messages: Locked<[String]>? = nil) -> Logger {
    if let messages {
        return Logger(label: "ops-http-test") { _ in CapturingLogHandler(messages: messages) }
    }
    return Logger(label: "ops-http-test") { _ in SwiftLogNoOpLogHandler() }
}

/// A started server on 127.0.0.1 and a free port; stop it with `stop()`.
func startedServer(
    _ configuration: OpsHTTPServer.Configuration = .init(),
    logger: Logger = testLogger(),
    handler: @escaping @Sendable (OpsRequest) -> OpsResponse
) throws -> OpsHTTPServer {
    let server = OpsHTTPServer(configuration: configuration, logger: logger, handler: handler)
    try server.start()
    return server
}

/// A fresh directory under the system temp dir, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        let base = NSTemporaryDirectory().hasSuffix("/") ? NSTemporaryDirectory() : NSTemporaryDirectory() + "/"
        var template = Array((base + "tandem-ops-http-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw RawHTTPError("mkdtemp failed")
        }
        path = String(cString: made)
    }

    func write(_ relative: String, _ contents: String) throws {
        try write(relative, Array(contents.utf8))
    }

    func write(_ relative: String, _ bytes: [UInt8]) throws {
        let url = URL(fileURLWithPath: path).appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }

    func symlink(_ relative: String, to destination: String) throws {
        try FileManager.default.createSymbolicLink(
            atPath: path + "/" + relative, withDestinationPath: destination)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Whether this machine can listen on the IPv6 loopback.
let ipv6LoopbackAvailable: Bool = {
    let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in6()
    address.sin6_family = sa_family_t(AF_INET6)
    address.sin6_addr = in6addr_loopback
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0
        }
    }
}()
