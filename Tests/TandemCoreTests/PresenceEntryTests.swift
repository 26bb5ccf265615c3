import Testing
@testable import TandemCore

/// Entries splice the state's canonical bytes between fields encoded once (issue 14); what they encode
/// must stay byte for byte what the protocol documents: the sorted-key serialization of the whole entry.
@Suite struct PresenceEntryTests {
    /// The entry as one JSON object, serialized the way entries were before the splice.
    func reference(sid: String, user: String, name: String, role: Role, node: String, version: UInt64, state: JSONValue) -> [UInt8] {
        JSONValue.object([
            "sid": .string(sid), "user": .string(user), "name": .string(name), "role": .string(role.rawValue),
            "node": .string(node), "v": .number(version), "state": state,
        ]).serialized
    }

    @Test(arguments: [UInt64(0), 1, 9, 10, 99, 100, 12_345, 1_000_000, PresenceEntry.maxVersion, UInt64.max - 1, UInt64.max])
    func encodesTheWholeEntryWithSortedKeys(version: UInt64) throws {
        let state: JSONValue = .object([
            "z": .number("-1.5e3"), "a": .array([.string("\u{2028}\"\\\n"), .null, .bool(true)]), "é": .object([:]),
        ])
        let names: [(String, String, String)] = [
            ("s1", "u1", "Ann"), ("sid\"quoted\\", "üser", "😀 \u{1} \u{7f}"), (String(repeating: "x", count: 40), "", ""),
        ]
        for (sid, user, name) in names {
            let entry = PresenceEntry(
                sid: sid, user: user, name: name, role: .viewer, node: "node-1", version: version,
                state: try #require(PresenceState(object: state)))
            #expect(entry.encoded == reference(sid: sid, user: user, name: name, role: .viewer, node: "node-1", version: version, state: state))
            #expect(entry.state == state)
        }
    }

    @Test func aNewStateIsSplicedIntoTheSameFieldsAtTheNextVersion() throws {
        let first = PresenceEntry(sid: "s", user: "u", name: "n", role: .editor, node: "a", version: 7, state: .empty)
        let next = first.with(state: .object(["cursor": .array([.number(3), .number(4)])]))
        #expect(next.version == 8)
        #expect(
            next.encoded
                == reference(
                    sid: "s", user: "u", name: "n", role: .editor, node: "a", version: 8,
                    state: .object(["cursor": .array([.number(3), .number(4)])])))
        #expect(first.with(version: 99).encoded == reference(sid: "s", user: "u", name: "n", role: .editor, node: "a", version: 99, state: .object([:])))
        #expect(first.movedTo(node: "b", version: 9).encoded == reference(sid: "s", user: "u", name: "n", role: .editor, node: "b", version: 9, state: .object([:])))
        // Decoding what was encoded gives the same entry back.
        #expect(PresenceEntry(encoded: next.encoded) == next)
        #expect(PresenceEntry(encoded: next.encoded)?.stateBytes == next.stateBytes)
    }

    @Test func onlyObjectsAreStates() {
        #expect(PresenceState(object: .array([])) == nil)
        #expect(PresenceState(object: .string("x")) == nil)
        #expect(PresenceState(object: .object(["b": .number(1), "a": .number(2)]))?.bytes == Array(#"{"a":2,"b":1}"#.utf8))
    }
}
