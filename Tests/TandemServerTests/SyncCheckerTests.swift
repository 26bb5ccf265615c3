import TandemCore
import Testing

/// The ordering checker every sync test relies on must itself catch broken streams.
@Suite struct SyncCheckerTests {
    private func feed(_ messages: [String], since: UInt64? = nil, sent: [String: String] = [:]) -> SyncView {
        var view = SyncView()
        view.pendingSince = [since]
        for (id, ops) in sent { view.sent[id] = try! Ops(json: json(ops)) }
        for text in messages { view.receive(json(text).objectValue!, sessions: ["me"]) }
        return view
    }

    @Test func acceptsACorrectStream() {
        let view = feed([
            #"{"t":"joined","doc":"d","clock":2}"#,
            #"{"t":"snapshot","doc":"d","clock":2,"records":{"a":{"v":1}},"more":true}"#,
            #"{"t":"snapshot","doc":"d","clock":2,"records":{"b":{"v":2}},"more":false}"#,
            #"{"t":"patch","doc":"d","clock":3,"ops":{"a":["remove"]},"by":"x"}"#,
            #"{"t":"result","doc":"d","id":1,"action":"commit","clock":4}"#,
            #"{"t":"result","doc":"d","id":2,"action":"discard","clock":4,"reason":"void"}"#,
            #"{"t":"result","doc":"d","id":3,"action":"rebase","clock":5,"ops":{"c":["put",{}]}}"#,
        ], sent: ["1": #"{"b":["patch",{"v":["put",3]}]}"#])
        #expect(view.violations == [])
        #expect(view.head == 5)
        #expect(view.records == ["b": json(#"{"v":3}"#), "c": json("{}")])
    }

    @Test func flagsGapsRepeatsEarlyDeliveryAndBadCatchUps() {
        #expect(!feed([
            #"{"t":"joined","doc":"d","clock":0}"#,
            #"{"t":"snapshot","doc":"d","clock":0,"records":{},"more":false}"#,
            #"{"t":"patch","doc":"d","clock":2,"ops":{},"by":"x"}"#,
        ]).violations.isEmpty, "a gap")
        #expect(!feed([
            #"{"t":"joined","doc":"d","clock":1}"#,
            #"{"t":"snapshot","doc":"d","clock":1,"records":{},"more":false}"#,
            #"{"t":"patch","doc":"d","clock":1,"ops":{},"by":"x"}"#,
        ]).violations.isEmpty, "a clock twice")
        #expect(!feed([
            #"{"t":"joined","doc":"d","clock":1}"#,
            #"{"t":"patch","doc":"d","clock":2,"ops":{},"by":"x"}"#,
            #"{"t":"snapshot","doc":"d","clock":1,"records":{},"more":false}"#,
        ]).violations.isEmpty, "a patch before the sync point")
        #expect(!feed([
            #"{"t":"joined","doc":"d","clock":3}"#,
            #"{"t":"log","doc":"d","entries":[{"clock":2,"ops":{},"by":"x"}],"head":3,"more":false}"#,
        ], since: 1).violations.isEmpty, "a catch-up that stops short of its head")
        #expect(!feed([
            #"{"t":"joined","doc":"d","clock":3}"#,
            #"{"t":"log","doc":"d","entries":[{"clock":3,"ops":{},"by":"x"}],"head":3,"more":false}"#,
        ], since: 1).violations.isEmpty, "a catch-up that skips a clock")
        #expect(!feed([
            #"{"t":"joined","doc":"d","clock":1}"#,
            #"{"t":"snapshot","doc":"d","clock":1,"records":{},"more":false}"#,
            #"{"t":"result","doc":"d","id":1,"action":"discard","clock":0,"reason":"void"}"#,
        ]).violations.isEmpty, "a discard that is not at the current position")
    }
}
