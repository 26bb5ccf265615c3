import TandemCore
import Testing

@testable import TandemKit

func ops(_ json: String) -> Ops { try! Ops(json: try! JSONParser.parse(json)) }

/// Folding a later edit into an unsent push must have the effect of applying both in order.
@Suite struct OpsCoalescingTests {
    func applied(_ list: [Ops], to records: [String: JSONValue]) -> [String: JSONValue] {
        var replica = DocReplica(records: records)
        for ops in list { replica.apply(clock: replica.head + 1, ops: ops) }
        return replica.records
    }

    @Test(arguments: [
        (#"{"a":["put",{"x":1}]}"#, #"{"a":["patch",{"y":["put",2]}]}"#, #"{"a":["put",{"x":1,"y":2}]}"#),
        (#"{"a":["patch",{"x":["put",1]}]}"#, #"{"a":["patch",{"y":["delete"]}]}"#, #"{"a":["patch",{"x":["put",1],"y":["delete"]}]}"#),
        (#"{"a":["patch",{"x":["put",1]}]}"#, #"{"a":["remove"]}"#, #"{"a":["remove"]}"#),
        (#"{"a":["remove"]}"#, #"{"a":["patch",{"x":["put",1]}]}"#, #"{"a":["remove"]}"#),
        (#"{"a":["remove"]}"#, #"{"a":["put",{}]}"#, #"{"a":["put",{}]}"#),
        (#"{"a":["patch",{"s":["append","ab",3]}]}"#, #"{"a":["patch",{"s":["append","c",5]}]}"#, #"{"a":["patch",{"s":["append","abc",3]}]}"#),
        (#"{"a":["patch",{"s":["put","x"]}]}"#, #"{"a":["patch",{"s":["append","y",1]}]}"#, #"{"a":["patch",{"s":["put","xy"]}]}"#),
        (#"{"a":["patch",{"s":["delete"]}]}"#, #"{"a":["patch",{"s":["append",[1],0]}]}"#, #"{"a":["patch",{"s":["put",[1]]}]}"#),
        (#"{"a":["patch",{"o":["patch",{"p":["put",1]}]}]}"#, #"{"a":["patch",{"o":["patch",{"q":["put",2]}]}]}"#, #"{"a":["patch",{"o":["patch",{"p":["put",1],"q":["put",2]}]}]}"#),
        (#"{"a":["put",{}]}"#, #"{"b":["remove"]}"#, #"{"a":["put",{}],"b":["remove"]}"#),
    ])
    func composes(first: String, second: String, expected: String) {
        let composed = OpsCoalescing.compose(ops(first), ops(second))
        #expect(composed == ops(expected))
        // Same effect as the two in order, on a record that exists and on one that does not.
        let states: [[String: JSONValue]] = [
            [:], ["a": ["x": 0, "s": "abc", "o": ["p": 0]]], ["a": ["s": "abcde"]],
        ]
        for state in states {
            #expect(applied([composed!], to: state) == applied([ops(first), ops(second)], to: state), "from \(state)")
        }
    }

    @Test(arguments: [
        (#"{"a":["patch",{"s":["append","ab",3]}]}"#, #"{"a":["patch",{"s":["append","c",9]}]}"#),
        (#"{"a":["patch",{"s":["patch",{}]}]}"#, #"{"a":["patch",{"s":["append","c",0]}]}"#),
        (#"{"a":["patch",{"s":["delete"]}]}"#, #"{"a":["patch",{"s":["append","c",2]}]}"#),
    ])
    func refusesWhatNoSingleOpSays(first: String, second: String) {
        #expect(OpsCoalescing.compose(ops(first), ops(second)) == nil)
    }

    @Test func appendOffsetsCountUTF16() {
        #expect(OpsCoalescing.length("é😀") == 3)
        #expect(OpsCoalescing.compose(ops(#"{"a":["patch",{"s":["append","😀",0]}]}"#), ops(#"{"a":["patch",{"s":["append","x",2]}]}"#))
            == ops(#"{"a":["patch",{"s":["append","😀x",0]}]}"#))
    }
}

@Suite struct BackoffTests {
    /// A generator that returns `value` (then counts up, so rejection sampling can finish).
    struct Fixed: RandomNumberGenerator {
        var value: UInt64
        mutating func next() -> UInt64 {
            defer { value &+= 1 }
            return value
        }
    }

    @Test func windowsDoubleUpToTheMaximum() {
        let backoff = Backoff(base: .milliseconds(250), maximum: .seconds(15))
        #expect(backoff.window(attempt: 0) == .milliseconds(250))
        #expect(backoff.window(attempt: 3) == .seconds(2))
        #expect(backoff.window(attempt: 6) == .seconds(15))
        #expect(backoff.window(attempt: 10_000) == .seconds(15))
    }

    @Test func fullJitterSpansTheWholeWindow() {
        let backoff = Backoff(base: .milliseconds(250), maximum: .seconds(15))
        var low = Fixed(value: 0)
        var high = Fixed(value: .max - 1000)
        #expect(backoff.delay(attempt: 3, using: &low) == .zero)
        #expect(backoff.delay(attempt: 3, using: &high) <= .seconds(2))
        #expect(backoff.delay(attempt: 3, using: &high) > .seconds(1))
        for attempt in 0..<20 {
            let delay = backoff.delay(attempt: attempt)
            #expect(delay >= .zero && delay <= backoff.window(attempt: attempt))
        }
    }
}

@Suite struct PresenceThrottleTests {
    let start = ContinuousClock.now

    @Test func sendsAtOnceThenAtMostOncePerIntervalLatestWins() {
        var throttle = PresenceThrottle(interval: PresenceThrottle.interval(presenceRate: 20))
        #expect(throttle.interval == .milliseconds(50))
        #expect(throttle.set(["c": 1], now: start) == .send(["c": 1]))
        guard case .arm(let deadline, let token) = throttle.set(["c": 2], now: start + .milliseconds(10)) else {
            Issue.record("expected a timer")
            return
        }
        #expect(deadline == start + .milliseconds(50))
        #expect(throttle.set(["c": 3], now: start + .milliseconds(20)) == PresenceThrottle.Action.none)
        #expect(throttle.timerFired(token: token, now: deadline) == ["c": 3])
        #expect(throttle.set(["c": 4], now: deadline + .milliseconds(60)) == .send(["c": 4]))
    }

    @Test func aTimerFromBeforeAResetIsIgnored() {
        var throttle = PresenceThrottle(interval: .milliseconds(50))
        _ = throttle.set(["c": 1], now: start)
        guard case .arm(_, let old) = throttle.set(["c": 2], now: start) else {
            Issue.record("expected a timer")
            return
        }
        throttle.reset()
        guard case .arm(_, let new) = throttle.set(["c": 3], now: start + .milliseconds(1)) else {
            Issue.record("expected a timer")
            return
        }
        #expect(throttle.timerFired(token: old, now: start + .milliseconds(2)) == nil)
        #expect(throttle.timerFired(token: new, now: start + .milliseconds(50)) == ["c": 3])
    }
}

@Suite struct InboundTests {
    /// A log entry wraps the pushed ops deeper than the push did (`entries` and the entry); a push at the server's depth limit
    /// (64: here 66 levels in the log message) must still be readable in the catch-up.
    @Test func readsLogEntriesNestedBeyondThePushDepthLimit() {
        var value = "1"
        for _ in 0..<60 { value = "[\(value)]" }
        let text = #"{"t":"log","doc":"d","entries":[{"clock":1,"ops":{"r":["put",{"f":"# + value + #"}]},"by":"S","id":1}],"head":1,"more":false}"#
        guard case .log(_, let entries, _)? = Inbound(text: text) else {
            Issue.record("log message not read")
            return
        }
        #expect(entries.count == 1)
    }

    @Test func ignoresUnknownTypesAndFields() {
        guard case .ignored? = Inbound(text: #"{"t":"future","x":1}"#) else {
            Issue.record("unknown type not ignored")
            return
        }
        guard case .pong? = Inbound(text: #"{"t":"pong","extra":[1,2]}"#) else {
            Issue.record("unknown field not ignored")
            return
        }
    }

    @Test func urlsCarryTheIdentityAndTheResumedSession() {
        let configuration = TandemConfiguration(urls: ["ws://a:1/v1/ws", "ws://b:2/v1/ws"], identity: .development(user: "ada lovelace", name: "Ada"))
        #expect(configuration.url(index: 0, resume: nil) == "ws://a:1/v1/ws?user=ada%20lovelace&name=Ada")
        #expect(configuration.url(index: 3, resume: "S-1_") == "ws://b:2/v1/ws?user=ada%20lovelace&name=Ada&resume=S-1_")
        let token = TandemConfiguration(urls: ["ws://a:1/v1/ws"], identity: .token("x.y+z"))
        #expect(token.url(index: 0, resume: nil) == "ws://a:1/v1/ws?token=x.y%2Bz")
    }
}

/// URLs are checked before anything is opened: `wss://` needs the package's TLS trait, anything else is refused.
@Suite struct URLCheckTests {
    func refusal(_ url: String) -> String? {
        do {
            _ = try TandemConnection(TandemConfiguration(urls: [url], identity: .development(user: "ada")))
            return nil
        } catch {
            guard case .invalidURL(let refused, let reason) = error, refused == url else { return "unexpected \(error)" }
            return reason
        }
    }

    @Test func wssNeedsTheTLSTraitAndOtherSchemesAreRefused() {
        #expect(refusal("http://127.0.0.1:7070/v1/ws")?.contains("expected ws://") == true)
        #expect(refusal("ws://127.0.0.1:7070/v1/ws") == nil)
        #if TLS
        #expect(refusal("wss://tandem.example/v1/ws") == nil)
        #else
        #expect(refusal("wss://tandem.example/v1/ws")?.contains("TLS trait") == true)
        #endif
    }
}
