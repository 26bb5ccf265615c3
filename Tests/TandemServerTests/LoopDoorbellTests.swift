import NIOCore
import NIOEmbedded
import NIOPosix
@testable import TandemServer
import Testing

/// `LoopDoorbell` on a real event loop: what it runs waits for the loop's next tick — after every task
/// of the running task phase, including the tasks those queue — where `execute` runs in that same phase.
@Suite struct LoopDoorbellTests {
    /// Rung (twice) while a chain of 100 tasks, each queuing the next, starts: it answers once, after the
    /// whole chain. The same closure queued with `execute` ran second (checked below as the contrast).
    @Test func answersOnceAfterTheTaskPhaseThatRangIt() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let (viaDoorbell, viaExecute) = try await loop.flatSubmit { () -> EventLoopFuture<([String], [String])> in
            let doorbellEvents = NIOLoopBoundBox([String](), eventLoop: loop)
            let executeEvents = NIOLoopBoundBox([String](), eventLoop: loop)
            let done = loop.makePromise(of: Void.self)
            return LoopDoorbell.make(on: loop) {
                doorbellEvents.value.append("rang")
                done.succeed()
            }.flatMap { doorbell in
                @Sendable func step(_ k: Int) {
                    doorbellEvents.value.append("task")
                    executeEvents.value.append("task")
                    if k < 100 { loop.execute { step(k + 1) } }
                }
                doorbell.ring()
                loop.execute { step(1) }
                loop.execute { executeEvents.value.append("executed") }
                doorbell.ring()
                let bound = NIOLoopBound(doorbell, eventLoop: loop)
                return done.futureResult.map {
                    bound.value.close()
                    return (doorbellEvents.value, executeEvents.value)
                }
            }
        }.get()
        #expect(viaDoorbell.count == 101 && viaDoorbell.last == "rang", "answered once, after the 100 tasks: \(viaDoorbell.suffix(3))")
        #expect(viaExecute.firstIndex(of: "executed") == 1, "execute ran inside the chain")
        try await group.shutdownGracefully()
    }

    /// On a loop without a selector (`EmbeddedEventLoop`, as unit tests drive shards) there is no doorbell:
    /// making one fails, and its owner sends rounds as tasks (it crashed the process before).
    @Test func anEmbeddedLoopHasNone() throws {
        let loop = EmbeddedEventLoop()
        let made = LoopDoorbell.make(on: loop) {}
        loop.run()
        #expect(throws: LoopDoorbell.NotASelectorLoop.self) { try made.wait() }
    }

    /// A closed doorbell answers nothing (a shard stopped with a ring pending), and closing twice is fine.
    @Test func aClosedDoorbellDoesNotAnswer() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let answered = try await loop.flatSubmit { () -> EventLoopFuture<Bool> in
            let rang = NIOLoopBoundBox(false, eventLoop: loop)
            return LoopDoorbell.make(on: loop) { rang.value = true }.flatMap { doorbell in
                doorbell.close()
                doorbell.ring()
                doorbell.close()
                // Two ticks later (a scheduled task after the close's own work): nothing answered.
                return loop.scheduleTask(in: .milliseconds(50)) { rang.value }.futureResult
            }
        }.get()
        #expect(!answered)
        try await group.shutdownGracefully()
    }
}
