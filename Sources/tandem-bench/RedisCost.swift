import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import TandemRedis

// `tandem-bench redis-cost`: the client-side cost of one Redis script call, from the caller's
// `evalScript` to the bytes on the socket and from the reply to the completion (issues 8 and 14).
//
// It makes `--count` calls of one shape against a real Redis, in bursts of `--burst` (a tick's presence
// writes or a doc shard's pipelined group commits go out together), through the client Tandem uses
// (`RedisClusterClient`, which serves a single Redis through one `RedisClient`). The arguments are built
// once: what is counted is the client's work, not the caller's. The script itself is trivial
// (`return #ARGV`), so Redis answers at once; its cost is not in this process.
//
// Instructions per call come from two runs with different counts under callgrind (this machine has no
// hardware counters for perf), the difference divided by the difference in calls, so start-up and connect cancel out:
// scripts/redis-cost.sh does that.

struct RedisCostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis-cost",
        abstract: "Script calls of a presence-write or group-commit shape against a Redis, for instructions per call.",
        discussion: "scripts/redis-cost.sh runs it twice under callgrind and prints instructions per call.")

    enum Shape: String, ExpressibleByArgument, CaseIterable {
        /// A presence write: 2 keys, 9 args, one entry of ~120 bytes and a message of ~180.
        case presence
        /// A group commit of 4 pushes: 9 keys, 38 args, ops of ~200 bytes each.
        case commit
    }

    @Option(help: "Redis URL.") var redis = "redis://127.0.0.1:6379"
    @Option(help: "Call shape: \(Shape.allCases.map(\.rawValue).joined(separator: ", ")).") var shape = Shape.presence
    @Option(help: "Measured calls.") var count = 20_000
    @Option(help: "Calls sent together before waiting for their replies.") var burst = 8
    @Flag(help: "Use RedisClient directly instead of RedisClusterClient (Tandem's).") var single = false

    func validate() throws {
        guard count > 0, burst > 0 else { throw ValidationError("count and burst must be > 0") }
    }

    func run() throws {
        let endpoint = try RedisEndpoint(url: redis)
        let client: any RedisCommandClient
        if single {
            client = RedisClient(configuration: .init(endpoint: endpoint))
        } else {
            client = RedisClusterClient(configuration: .init(seeds: [endpoint]))
        }
        client.start()
        defer { client.shutdown() }
        let deadline = Date().addingTimeInterval(10)
        while !client.isConnected {
            guard Date() < deadline else { throw ValidationError("no connection to \(redis)") }
            usleep(10_000)
        }
        let script = RedisScript("return #ARGV")
        let (keys, args) = Self.arguments(shape)
        // Calls of the current burst not completed yet; the last completion signals `burstDone`.
        let outstanding = NIOLockedValueBox(0)
        let burstDone = ConditionLock(value: false)
        let failures = NIOLockedValueBox(0)
        let completion: @Sendable (Result<RedisValue, RedisError>) -> Void = { result in
            if case .success(.integer) = result {} else { failures.withLockedValue { $0 += 1 } }
            if outstanding.withLockedValue({ $0 -= 1; return $0 == 0 }) {
                burstDone.lock()
                burstDone.unlock(withValue: true)
            }
        }
        let started = Date()
        var sent = 0
        while sent < count {
            let now = min(burst, count - sent)
            outstanding.withLockedValue { $0 = now }
            burstDone.lock()
            burstDone.unlock(withValue: false)
            for _ in 0..<now {
                client.evalScript(script, keys: keys, args: args, completion: completion)
            }
            burstDone.lock(whenValue: true)
            burstDone.unlock()
            sent += now
        }
        let seconds = Date().timeIntervalSince(started)
        let failed = failures.withLockedValue { $0 }
        print("redis-cost shape=\(shape.rawValue) calls=\(count) burst=\(burst) failed=\(failed) seconds=\(String(format: "%.3f", seconds))")
        if failed > 0 { throw ExitCode.failure }
    }

    /// Keys and arguments shaped like Tandem's (sizes from PresenceStore.write and SyncStore.arguments).
    static func arguments(_ shape: Shape) -> (keys: [any RedisArgument], args: [any RedisArgument]) {
        let bytes = { (n: Int, seed: UInt8) in (0..<n).map { UInt8(truncatingIfNeeded: Int(seed) &+ $0 * 7) } }
        switch shape {
        case .presence:
            let doc = "bench-doc-0042"
            let entry = bytes(120, 3)
            return (
                ["tandem:{\(doc)}:presence", "tandem:{\(doc)}:nodes"],
                ["node-7f3a9c", 30_000, "0", "0", "tandem:{\(doc)}", bytes(180, 5), 1, "s-5f2c9e1a7b", entry]
            )
        case .commit:
            let doc = "bench-doc-0042"
            let keys: [any RedisArgument] = ["clock", "log", "records", "pushes", "sums", "created", "meta", "legacy", "index"]
                .map { "tandem:{\(doc)}:\($0)" }
            var args: [any RedisArgument] = [
                "node-7f3a9c", "tandem:{\(doc)}", 10_000, 100_000, 86_400_000, "group", "0", "1733400000000",
                bytes(40, 1), [UInt8](), 4, "tok-8d1e", "r-91:17", "17",
            ]
            for push in 0..<4 {
                args.append("s-5f2c9e1a7b\(push)")
                args.append("p-\(push)-1733400000000")
                args.append(bytes(200, UInt8(push)))
            }
            args.append(2)
            for record in 0..<2 {
                args.append("r-\(record)")
                args.append("v")
                args.append(String(40 + record))
            }
            args.append(2)
            for record in 0..<2 {
                args.append("r-\(record)")
                args.append(bytes(60, UInt8(record)))
            }
            return (keys, args)
        }
    }
}
