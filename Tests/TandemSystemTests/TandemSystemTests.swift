import Foundation
import NIOCore
import TandemSystem
import TandemTestSupport
import Testing

/// Issue 9: the pieces every module shares (one clock, one spawner, one redis-server launcher, one
/// percent-decoder).
@Suite struct TandemSystemTests {
    @Test func theClockIsTheOneNIOReads() {
        // Interleaved readings of the two clocks stay in order only if they are one clock (CLOCK_MONOTONIC).
        for _ in 0..<100 {
            let before = TandemClock().nowNanos()
            let nio = NIODeadline.now().uptimeNanoseconds
            let after = TandemClock.monotonicNanos()
            #expect(before <= nio && nio <= after)
        }
        let wall = TandemClock().wallMs()
        let foundation = UInt64(Date().timeIntervalSince1970 * 1000)
        #expect(wall <= foundation && TandemClock().wallMs() >= foundation, "the wall clock is the system's")
    }

    @Test func percentDecodingRejectsOrKeepsMalformedEscapes() {
        #expect(PercentDecoding.decode("p%40ss%3a%2F", malformed: .reject) == Array("p@ss:/".utf8))
        for malformed in ["%", "%4", "%zz", "a%g1"] {
            #expect(PercentDecoding.decode(malformed, malformed: .reject) == nil, "\(malformed)")
            #expect(PercentDecoding.decode(malformed, malformed: .keepLiterally) == Array(malformed.utf8), "\(malformed)")
        }
        #expect(PercentDecoding.decode("a%20b%", malformed: .keepLiterally) == Array("a b%".utf8))
        #expect(PercentDecoding.hexValue(UInt8(ascii: "F")) == 15 && PercentDecoding.hexValue(UInt8(ascii: "g")) == nil)
    }

    @Test func aSpawnedChildGetsSignalsItsEnvironmentAndItsDirectory() async throws {
        let directory = try makeTemporaryDirectory(prefix: "tandem-spawn")
        let output = directory.appendingPathComponent("out").path
        // Block SIGTERM on this thread: the child must still get it (posix_spawn empties the mask).
        var term = sigset_t()
        sigemptyset(&term)
        sigaddset(&term, SIGTERM)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &term, &previous)
        let child = try SpawnedProcess(
            executable: "/bin/sh", arguments: ["-c", "pwd; echo \"$GREETING\"; echo oops >&2; exec sleep 30"],
            environment: ["GREETING": "hello", "PATH": "/usr/bin:/bin"], workingDirectory: directory.path,
            output: .file(path: output, append: false))
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        try await waitUntil("the child wrote its lines") {
            ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n").count == 3
        }
        let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(URL(fileURLWithPath: lines[0]).resolvingSymlinksInPath() == directory.resolvingSymlinksInPath())
        #expect(lines[1] == "hello" && lines[2] == "oops")
        #expect(child.isRunning)
        #expect(await child.terminate(signal: SIGTERM, grace: .seconds(10)) == .signaled(SIGTERM), "SIGTERM, not the SIGKILL fallback")
        child.signal(SIGKILL)  // reaped: never reaches a recycled pid
        #expect(child.exitStatus == .signaled(SIGTERM))
    }

    @Test func exitCodesAndAMissingProgram() async throws {
        let child = try SpawnedProcess(executable: "/bin/sh", arguments: ["-c", "exit 7"])
        #expect(await child.waitForExit(timeout: .seconds(10)) == .exited(7))
        #expect(throws: SpawnedProcess.SpawnError.self) { try SpawnedProcess(executable: "/nonexistent/program", arguments: []) }
        #expect(SpawnedProcess.locate("sh") != nil)
        #expect(SpawnedProcess.locate("no-such-program-here") == nil)
    }

    @Test func theLauncherStartsARedisServerThatAnswersAndStopsIt() async throws {
        let directory = try makeTemporaryDirectory(prefix: "tandem-launch")
        let socket = directory.appendingPathComponent("redis.sock").path
        let server = try RedisServerChild(
            executable: try #require(SpawnedProcess.locate("redis-server")), directory: directory.path, port: 0,
            unixSocket: socket, arguments: ["--appendonly", "no"])
        #expect(server.endpoint == .unix(path: socket))
        #expect(await server.waitUntilAnswering(timeout: .seconds(10)))
        #expect(RedisServerChild.answersPing(.unix(path: socket)))
        #expect(await server.stop(grace: .seconds(10)))
        #expect(server.process.exitStatus == .exited(0), "SIGTERM: a clean exit")
        #expect(!RedisServerChild.answersPing(.unix(path: socket)))
    }

    @Test func aServerThatExitsAtOnceIsNotWaitedFor() async throws {
        let directory = try makeTemporaryDirectory(prefix: "tandem-launch")
        let server = try RedisServerChild(
            executable: try #require(SpawnedProcess.locate("redis-server")), directory: directory.path,
            port: try #require(LoopbackPort.probe()), arguments: ["--no-such-directive", "1"])
        #expect(await server.waitUntilAnswering(timeout: .seconds(60)) == false)
        #expect(!server.process.isRunning)
    }
}
