import Testing

@testable import TandemServer

@Suite struct PendingHandshakeQueueTests {
    @Test func atTheLimitTheOldestPendingSocketMakesRoom() {
        var queue = PendingHandshakeQueue<String>(limit: 3)
        let a = queue.add("a"), b = queue.add("b"), c = queue.add("c")
        #expect([a.displaced, b.displaced, c.displaced] == [nil, nil, nil])
        let d = queue.add("d")
        #expect(d.displaced == "a")
        #expect(queue.count == 3)
        let removedA = queue.remove(a.id), removedB = queue.remove(b.id)
        #expect(!removedA, "a displaced socket is no longer pending")
        #expect(removedB, "an upgraded socket leaves the queue")
        let e = queue.add("e"), f = queue.add("f")
        #expect(e.displaced == nil, "room again after b left")
        #expect(f.displaced == "c", "b finished, so c is the oldest")
    }

    @Test func finishedSocketsDoNotPileUpInTheOrder() {
        var queue = PendingHandshakeQueue<Int>(limit: 1_000)
        for i in 0..<100_000 {
            let (id, displaced) = queue.add(i)
            #expect(displaced == nil)
            queue.remove(id)
        }
        #expect(queue.count == 0)
        let held = (0..<1_000).map { queue.add($0).id }
        let newest = queue.add(-1)
        #expect(newest.displaced == 0, "still oldest first after many finished handshakes")
        _ = held
    }
}
