import Foundation
import TandemTestSupport
import Testing
@testable import TandemOpsHTTP

/// Many clients at once, and handlers that take their time.
@Suite struct ConcurrencyTests {
    @Test func fiftyConcurrentRequestsFromSeveralThreadsAreAllAnsweredCorrectly() throws {
        let server = try startedServer { request in
            let id = request.query["id"] ?? "?"
            return .text("answer-\(id)-\(request.headers["x-client-thread"] ?? "?")")
        }
        defer { server.stop() }
        let port = server.boundPort

        let failures = Locked<[String]>([])
        let answered = Locked(Set<Int>())
        let threads = 10
        let perThread = 5
        let finished = runOnThreads(threads) { thread in
            for round in 0..<perThread {
                let id = thread * perThread + round
                do {
                    let response = try RawHTTP.request(
                        "GET", "/work?id=\(id)", port: port, headers: [("X-Client-Thread", "\(thread)")])
                    if response.status == 200, response.text == "answer-\(id)-\(thread)" {
                        answered.withLock { _ = $0.insert(id) }
                    } else {
                        failures.withLock { $0.append("id \(id): \(response.status) \(response.text)") }
                    }
                } catch {
                    failures.withLock { $0.append("id \(id): \(error)") }
                }
            }
        }
        #expect(finished)
        #expect(failures.current == [])
        #expect(answered.current == Set(0..<threads * perThread))
    }

    /// A slow answer must not hold up other requests, even with one polling thread: the handler defers
    /// it, and the fast requests have to complete while the slow one is provably still waiting (ordering,
    /// not timing).
    @Test func aSlowDeferredAnswerDoesNotBlockOtherRequests() async throws {
        let slowStarted = Locked(false)
        let release = DispatchSemaphore(value: 0)
        let server = OpsHTTPServer(configuration: .init(threads: 1, responseTimeoutMs: 30_000), logger: testLogger()) { request in
            switch request.path {
            case "/slow":
                return .deferred { responder in
                    slowStarted.withLock { $0 = true }
                    Thread {
                        // Bounded so a broken test cannot hang the suite.
                        let released = release.wait(timeout: .now() + 20) == .success
                        responder.respond(.text(released ? "slow done" : "slow timed out"))
                    }.start()
                }
            default:
                return .response(.text("fast"))
            }
        }
        try server.start()
        defer { server.stop() }
        let port = server.boundPort

        let slowResponse = Locked<RawHTTPResponse?>(nil)
        let slowClient = BackgroundWork {
            let response = try? RawHTTP.get("/slow", port: port)
            slowResponse.withLock { $0 = response }
        }
        try await waitUntil { slowStarted.current }

        for _ in 0..<3 {
            let fast = try RawHTTP.get("/fast", port: port)
            #expect(fast.text == "fast")
        }
        #expect(slowResponse.current == nil, "fast requests completed while /slow was still waiting")

        release.signal()
        #expect(slowClient.wait())
        #expect(slowResponse.current?.text == "slow done")
    }
}
