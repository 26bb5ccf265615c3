@testable import TandemServer
import Testing

/// Issue 14: a connection remembers the doc it last sent presence for (its string and shard) and skips the
/// doc's lookup and checks while it names that doc again. The memory must go with any change of the
/// connection's docs: a leave, or a re-join that hides its presence, is answered as before.
struct PresenceKnownDocTests {
    typealias Fixture = ConnectionLayerTests.Fixture

    func errorCodes(_ client: ConnectionLayerTests.Client) throws -> [String] {
        try client.frames().compactMap { frame in
            guard frame.text.contains(#""t":"error""#), let range = frame.text.range(of: #""code":""#) else { return nil }
            return String(frame.text[range.upperBound...].prefix { $0 != "\"" })
        }
    }

    @Test func aRememberedDocIsForgottenWhenTheConnectionsDocsChange() throws {
        let doc = "workspace:board-1234567"
        let fixture = try Fixture {
            $0.tickMs = 50
            $0.presenceRate = 1_000
            $0.presenceBurst = 1_000
        }
        let alice = fixture.client
        let bob = try fixture.addClient(id: 2, user: "u2")
        fixture.shards.all[0].start()
        alice.receive(#"{"t":"join","doc":"\#(doc)"}"#)
        bob.receive(#"{"t":"join","doc":"\#(doc)"}"#)
        fixture.loop.advanceTime(by: .milliseconds(50))
        _ = try alice.frames()
        _ = try bob.frames()
        func sentToBob(_ n: Int) throws -> Bool {
            fixture.loop.advanceTime(by: .milliseconds(50))
            return try bob.frames().contains { $0.text.contains(#""n":\#(n)"#) }
        }

        // Twice: the second update takes the remembered doc.
        alice.receive(#"{"t":"presence","doc":"\#(doc)","state":{"n":1}}"#)
        alice.receive(#"{"t":"presence","doc":"\#(doc)","state":{"n":2}}"#)
        #expect(try sentToBob(2))
        #expect(try errorCodes(alice).isEmpty)

        // Left: refused on the connection, never applied.
        alice.receive(#"{"t":"leave","doc":"\#(doc)"}"#)
        alice.receive(#"{"t":"presence","doc":"\#(doc)","state":{"n":3}}"#)
        #expect(try errorCodes(alice) == ["not_joined"])
        #expect(try !sentToBob(3))

        // Joined again with its presence hidden: refused as disabled.
        alice.receive(#"{"t":"join","doc":"\#(doc)","presence":"hidden"}"#)
        fixture.loop.advanceTime(by: .milliseconds(50))
        _ = try alice.frames()
        alice.receive(#"{"t":"presence","doc":"\#(doc)","state":{"n":4}}"#)
        #expect(try errorCodes(alice) == ["presence_disabled"])
        #expect(try !sentToBob(4))

        // Shown again: applied again.
        alice.receive(#"{"t":"join","doc":"\#(doc)","presence":"full"}"#)
        fixture.loop.advanceTime(by: .milliseconds(50))
        _ = try alice.frames()
        alice.receive(#"{"t":"presence","doc":"\#(doc)","state":{"n":5}}"#)
        alice.receive(#"{"t":"presence","doc":"\#(doc)","state":{"n":6}}"#)
        #expect(try sentToBob(6))
        #expect(try errorCodes(alice).isEmpty)
    }

    @Test func anotherDocThanTheRememberedOneIsCheckedAsBefore() throws {
        let fixture = try Fixture { $0.tickMs = 50 }
        fixture.shards.all[0].start()
        fixture.receive(#"{"t":"join","doc":"d1"}"#)
        fixture.loop.advanceTime(by: .milliseconds(50))
        _ = try fixture.frames()
        fixture.receive(#"{"t":"presence","doc":"d1","state":{"n":1}}"#)
        // Not joined, and a doc id that is not valid: the first refused as not joined, the second by the parser.
        fixture.receive(#"{"t":"presence","doc":"d2","state":{"n":2}}"#)
        fixture.receive(#"{"t":"presence","doc":"d 1","state":{"n":3}}"#)
        #expect(try errorCodes(fixture.client) == ["not_joined", "bad_message"])
    }
}
