import Foundation
import Testing
import TandemSystem
import TandemTestSupport

/// A node raises its open-file soft limit to the hard limit at start-up (every socket is a descriptor:
/// with the usual soft limit of 1,024 a node stops accepting, clients and health checks alike, long before
/// --max-connections), and warns when even the hard limit cannot hold the connection bounds.
@Suite(.serialized, .cleanup) struct FileDescriptorLimitTests {
    /// Starts `tandem serve` under `ulimit -S -n soft -H -n hard` (the shell execs it, keeping its pid).
    func serve(_ redis: RedisServerProcess, soft: Int, hard: Int, extra: [String] = []) throws -> ChildProcess {
        let tandem = try BuiltProducts.executable(named: "tandem")
        return try ChildProcess(
            executable: "/bin/sh",
            arguments: ["-c", "ulimit -S -n \(soft) && ulimit -H -n \(hard) && exec \"$0\" \"$@\"", tandem,
                "serve", "--port", "0", "--ops-port", "0", "--redis", redis.url, "--log-level", "debug"] + extra)
    }

    func softLimit(pid: Int32) throws -> Int? {
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        let line = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }
        return line.flatMap { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first }.flatMap { Int($0) }
    }

    @Test func theSoftLimitIsRaisedToTheHardLimit() async throws {
        // A hard limit may only be lowered without privileges: use this process's (4,096 at most).
        let hard = Int(min(FileDescriptorLimit.current().hard, 4_096))
        try #require(hard > 512, "this machine's hard open-file limit is \(hard)")
        let redis = try RedisServerProcess()
        let node = try serve(redis, soft: 256, hard: hard, extra: ["--max-connections", "100", "--max-pending-handshakes", "100", "--ops-max-connections", "100"])
        _ = try await node.waitForOutput(matching: #"listening"#, timeout: .seconds(30))
        #expect(try softLimit(pid: node.pid) == hard)
        #expect(node.logText.contains("raised the open-file limit"))
        #expect(!node.logText.contains("open-file limit too low"))
        node.signal(SIGTERM)
        #expect(try await node.waitForExit(timeout: .seconds(15)) == 0)
    }

    @Test func aHardLimitBelowTheConnectionBoundsIsWarnedAbout() async throws {
        let redis = try RedisServerProcess()
        let node = try serve(redis, soft: 256, hard: 512)
        _ = try await node.waitForOutput(matching: #"listening"#, timeout: .seconds(30))
        #expect(try softLimit(pid: node.pid) == 512)
        #expect(node.logText.contains("open-file limit too low for the connection bounds"), "\(node.logText)")
        node.signal(SIGTERM)
        #expect(try await node.waitForExit(timeout: .seconds(15)) == 0)
    }
}
