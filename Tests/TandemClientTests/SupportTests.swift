import Foundation
import NIOCore
import NIOPosix
import TandemTestSupport
import Testing

@Suite("TandemTestSupport")
struct SupportTests {
    @Test func waitUntilReturnsOnceTheConditionHolds() async throws {
        let polls = Locked(0)
        try await waitUntil("three polls", timeout: .seconds(10), poll: .milliseconds(1)) {
            polls.withLock { $0 += 1; return $0 == 3 }
        }
        #expect(polls.value == 3)
    }

    @Test func waitUntilThrowsADescriptiveTimeout() async throws {
        let state = "still waiting"
        let error = await #expect(throws: WaitTimeoutError.self) {
            try await waitUntil("the moon, state \(state)", timeout: .milliseconds(50)) { false }
        }
        #expect(error?.message == "the moon, state still waiting")
        #expect(error?.description.contains("timed out after") == true)
        #expect(error?.location.contains("SupportTests.swift") == true)
    }

    @Test func childProcessOutputSignalAndExitStatus() async throws {
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "echo ready; sleep 30"])
        #expect(try await child.waitForOutput(matching: "^rea.y$") == "ready")
        #expect(child.isRunning)
        #expect(child.pid > 0)
        #expect(child.exitStatus == nil)

        child.signal(SIGTERM)

        #expect(try await child.waitForTermination() == .signaled(SIGTERM))
        #expect(try await child.waitForExit() == SIGTERM)
        #expect(!child.isRunning)
        #expect(child.logText == "ready\n")
    }

    @Test func childProcessCapturesStdoutAndStderrAndExitCode() async throws {
        let child = try ChildProcess(
            executable: "/bin/sh",
            arguments: ["-c", "echo out; echo \"err $TANDEM_TEST_VALUE\" >&2; exit 3"],
            environment: ["TANDEM_TEST_VALUE": "42"]
        )
        #expect(try await child.waitForExit() == 3)
        #expect(child.exitStatus == .exited(3))
        #expect(child.logText.contains("out\n"))
        #expect(child.logText.contains("err 42\n"))
        #expect(child.logURL.path.hasPrefix(child.directory.path))
    }

    @Test func waitForOutputFailsFastWhenTheChildExits() async throws {
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "echo booting; exit 1"])
        let error = await #expect(throws: ChildProcess.Failure.self) {
            _ = try await child.waitForOutput(matching: "listening", timeout: .seconds(30))
        }
        guard case .exitedBeforeOutput(_, let status, let log)? = error else {
            Issue.record("expected exitedBeforeOutput, got \(String(describing: error))")
            return
        }
        #expect(status == .exited(1))
        #expect(log == "booting\n")
    }

    @Test func killStopsTheWholeProcessGroup() async throws {
        // The shell starts a background child; SIGKILL to the group must take both down.
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "sleep 30 & echo $!; wait"])
        let grandchild = try #require(Int32(try await child.waitForOutput(matching: #"^\d+$"#)))
        child.kill()
        #expect(try await child.waitForTermination() == .signaled(SIGKILL))
        try await waitUntil("background sleep is gone") { kill(grandchild, 0) != 0 }
    }

    @Test func freeTCPPortCanBeBound() async throws {
        let port = freeTCPPort()
        #expect((1...65535).contains(port))
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: port)
            .get()
        #expect(channel.localAddress?.port == port)
        try await channel.close()
    }

    @Test func builtProductsFindsTheTandemExecutable() throws {
        let path = try BuiltProducts.executable(named: "tandem")
        #expect(path.hasSuffix("/tandem"))
        #expect(FileManager.default.isExecutableFile(atPath: path))
        #expect(throws: BuiltProducts.NotFound.self) {
            try BuiltProducts.executable(named: "no-such-product")
        }
    }

    @Test func testArtifactsDirectoryIsInThePackage() throws {
        let directory = TestArtifacts.directory
        #expect(directory.lastPathComponent == "test-artifacts")
        #expect(FileManager.default.fileExists(atPath: directory.deletingLastPathComponent().appendingPathComponent("Package.swift").path))
        #expect(FileManager.default.fileExists(atPath: directory.path))
    }

    @Test func jsonHelpersReadNestedFields() throws {
        let message = try JSON.parse(#"{"type":"presence","peers":[{"id":"a","x":3,"live":true,"w":1.5}],"meta":null}"#)
        #expect(JSON.string(message, at: "type") == "presence")
        #expect(JSON.string(message, at: "peers.0.id") == "a")
        #expect(JSON.int(message, at: "peers.0.x") == 3)
        #expect(JSON.double(message, at: "peers.0.w") == 1.5)
        #expect(JSON.int(message, at: "peers.0.w") == nil)
        #expect(JSON.bool(message, at: "peers.0.live") == true)
        #expect(JSON.int(message, at: "peers.0.live") == nil)
        #expect(JSON.bool(message, at: "peers.0.x") == nil)
        #expect(JSON.array(message, at: "peers")?.count == 1)
        #expect(JSON.isNull(message, at: "meta"))
        #expect(JSON.value(message, at: "peers.1") == nil)
        #expect(throws: JSON.NotAnObject.self) { try JSON.parse("[1,2]") }
        #expect(try JSON.string(from: ["b": 1, "a": "x"]) == #"{"a":"x","b":1}"#)
    }
}
