import Foundation
@testable import TandemYjs
import Testing

/// Randomized interop against the two reference implementations (Tests/yjs):
/// pycrdt (yrs) writes the documents and judges content; Yjs itself judges bytes.
///
/// For every seed, a scenario of several clients editing concurrently (Y.Text with formatting
/// attributes and embeds, Y.Array, Y.Map, nested types, sub-documents, XML, deletions, syncs in
/// random orders) gives its updates, and:
/// - every update (and the whole document) decodes and re-encodes to the same bytes;
/// - Tandem's state vector of the document equals Yjs's `encodeStateVectorFromUpdate` byte for
///   byte, and pycrdt's (yrs writes entries in hash-map order, so as a map; as bytes when there is
///   one entry) — for every single update too;
/// - the updates, shuffled and split into random groups, merge to what Yjs's `mergeUpdates`
///   writes, group by group, and so do the merged groups merged again; pycrdt applying that one
///   update reaches the same content as applying the originals;
/// - split into runs of consecutive updates, they merge to what Yjs writes too, and pycrdt
///   applying the merged runs in order reaches the same content;
/// - at a random earlier state (pycrdt's document after a prefix of the updates), Tandem's
///   `diffUpdate` against pycrdt's state vector is what Yjs's `diffUpdate` writes, and pycrdt
///   applying it to the document at that state reaches the full content.
///
/// "What Yjs writes": byte for byte, or equal once both are re-written by Yjs (see
/// ``ScenarioChecker/sameAsYjs(_:_:)``: Tandem keeps values' bytes as clients wrote them).
///
/// pycrdt 0.14 (yrs) does not converge when given updates out of causal order (it leaves some in
/// its pending set: applying the original updates shuffled loses content in most scenarios), so it
/// only ever gets updates in the order they were made, or one update holding everything.
///
/// `TANDEM_YJS_INTEROP_SEEDS` (default 300 pycrdt scenarios, a third as many Yjs ones) and
/// `TANDEM_YJS_INTEROP_FIRST_SEED` (default 1) choose the seeds: a failure names its seed, and
/// `TANDEM_YJS_INTEROP_FIRST_SEED=N TANDEM_YJS_INTEROP_SEEDS=1` replays it alone.
@Suite(.serialized) struct InteropTests {
    static var seeds: Range<UInt64> {
        let environment = ProcessInfo.processInfo.environment
        let first = environment["TANDEM_YJS_INTEROP_FIRST_SEED"].flatMap(UInt64.init) ?? 1
        let count = environment["TANDEM_YJS_INTEROP_SEEDS"].flatMap(UInt64.init) ?? 300
        return first..<(first + count)
    }

    @Test func pycrdtDocumentsAgreeWithYjsAndPycrdt() throws {
        let pycrdt = try Oracle.pycrdt()
        let yjs = try Oracle.yjs()
        var checker = ScenarioChecker(pycrdt: pycrdt, yjs: yjs)
        for seed in Self.seeds {
            let scenario = try pycrdt.request([
                "op": "scenario", "seed": seed, "clients": 2 + Int(seed % 3), "steps": 10 + Int(seed % 50),
            ])
            try checker.checking(seed) { checker in
                try checker.check(
                    seed: seed, updates: try pycrdt.byteList(scenario, "updates"), full: try pycrdt.bytes(scenario, "full"),
                    content: scenario["content"] as? String)
            }
            if checker.failures >= 5 { break }
        }
        #expect(checker.failures == 0)
        checker.coverage.report(label: "pycrdt")
        checker.coverage.expectAll(
            of: [.string, .embed, .format, .type, .any, .doc, .deleted, .gc, .skip, .typeRef(1), .typeRef(0), .typeRef(2),
                .typeRef(3), .typeRef(6), .anyTag(119), .anyTag(118), .anyTag(117), .anyTag(116), .anyTag(124),
                .anyTag(123), .anyTag(126), .anyTag(120), .anyTag(121), .anyTag(125), .originAndParentSub,
                .mergedGC, .diffOffset])
    }

    @Test func yjsDocumentsAgreeWithYjsAndPycrdt() throws {
        let pycrdt = try Oracle.pycrdt()
        let yjs = try Oracle.yjs()
        var checker = ScenarioChecker(pycrdt: pycrdt, yjs: yjs)
        let seeds = Self.seeds
        for seed in seeds.lowerBound..<(seeds.lowerBound + max(1, UInt64(seeds.count) / 3)) {
            let scenario = try yjs.request([
                "op": "scenario", "seed": seed, "clients": 2 + Int(seed % 3), "steps": 10 + Int(seed % 40),
            ])
            try checker.checking(seed) { checker in
                try checker.check(
                    seed: seed, updates: try yjs.byteList(scenario, "updates"), full: try yjs.bytes(scenario, "full"),
                    content: nil)
            }
            if checker.failures >= 5 { break }
        }
        #expect(checker.failures == 0)
        checker.coverage.report(label: "yjs")
        checker.coverage.expectAll(of: [.binary, .anyTag(125), .format, .embed, .skip, .deleted, .gc, .typeRef(3), .typeRef(6)])
    }

    @Test func protocolMessagesRoundTrip() throws {
        let pycrdt = try Oracle.pycrdt()
        let yjs = try Oracle.yjs()
        var kinds: Set<String> = []
        for seed in UInt64(1)...20 {
            for oracle in [pycrdt, yjs] {
                for message in try oracle.byteList(try oracle.request(["op": "messages", "seed": seed]), "messages") {
                    let decoded = try YProtocolMessage(decoding: message)
                    #expect(decoded.encoded() == message, "\(oracle.name) seed \(seed): \(Hex.encode(message))")
                    switch decoded {
                    case .syncStep1(let stateVector):
                        kinds.insert("step1")
                        #expect(try YStateVector(decoding: stateVector).encoded() == stateVector)
                    case .syncStep2(let update), .update(let update):
                        kinds.insert(decoded == .update(update) ? "update" : "step2")
                        #expect(try YUpdate(decoding: update).encoded() == update)
                    case .awareness(let awareness):
                        kinds.insert(awareness.entries.contains(where: \.isRemoval) ? "awareness-removal" : "awareness")
                    case .permissionDenied: kinds.insert("auth")
                    case .queryAwareness: kinds.insert("query-awareness")
                    }
                }
            }
        }
        #expect(kinds == ["step1", "step2", "update", "awareness", "awareness-removal", "auth", "query-awareness"])
    }
}

/// What the scenarios exercised, so a generator that stops producing a case fails the test instead
/// of silently testing less.
struct Coverage {
    enum Case: Hashable {
        case deleted, json, binary, string, embed, format, type, any, doc, gc, skip
        case typeRef(Int)
        case anyTag(UInt8)
        /// A string cut inside a surrogate pair by a merge or a diff.
        case surrogateSplit
        /// An item with an origin whose info byte has the parentSub bit (map entries).
        case originAndParentSub
        /// GCs joined by a merge.
        case mergedGC
        /// A diff that cut a struct at the peer's clock.
        case diffOffset
        /// Merges and diffs whose bytes equal Yjs's…
        case identicalToYjs
        /// …those equal once Yjs 13.5's delete set is sorted as Yjs 13.6 sorts it…
        case identicalToYjsWithDeleteSetSorted
        /// …and those equal once Yjs has rewritten values (see ScenarioChecker.sameAsYjs).
        case identicalToYjsOnceValuesRewritten
        /// Merges whose inputs hold an item and a GC at one clock, where Yjs's choice is V8's.
        case itemAndGCAtOneClock
    }

    private(set) var seen: [Case: Int] = [:]

    mutating func note(_ item: Case, count: Int = 1) { self.seen[item, default: 0] += count }

    mutating func note(update: YUpdate) {
        for block in update.structs {
            switch block {
            case .gc: self.note(.gc)
            case .skip: self.note(.skip)
            case .item(let item):
                if item.origin != nil || item.rightOrigin != nil, item.parentSubBit { self.note(.originAndParentSub) }
                switch item.content {
                case .deleted: self.note(.deleted)
                case .json: self.note(.json)
                case .binary: self.note(.binary)
                case .string: self.note(.string)
                case .embed: self.note(.embed)
                case .format: self.note(.format)
                case .type(let ref):
                    self.note(.type)
                    switch ref {
                    case .array: self.note(.typeRef(0))
                    case .map: self.note(.typeRef(1))
                    case .text: self.note(.typeRef(2))
                    case .xmlElement: self.note(.typeRef(3))
                    case .xmlFragment: self.note(.typeRef(4))
                    case .xmlHook: self.note(.typeRef(5))
                    case .xmlText: self.note(.typeRef(6))
                    }
                case .any(let values):
                    self.note(.any)
                    values.forEach { self.note(any: $0) }
                case .doc(_, let options):
                    self.note(.doc)
                    self.note(any: options)
                }
            }
        }
    }

    mutating func note(any value: Lib0Any) {
        switch value {
        case .undefined: self.note(.anyTag(127))
        case .null: self.note(.anyTag(126))
        case .integer: self.note(.anyTag(125))
        case .float32: self.note(.anyTag(124))
        case .float64: self.note(.anyTag(123))
        case .bigInt: self.note(.anyTag(122))
        case .bool(let flag): self.note(.anyTag(flag ? 120 : 121))
        case .string: self.note(.anyTag(119))
        case .object(let entries):
            self.note(.anyTag(118))
            entries.forEach { self.note(any: $0.value) }
        case .array(let values):
            self.note(.anyTag(117))
            values.forEach { self.note(any: $0) }
        case .bytes: self.note(.anyTag(116))
        }
    }

    func report(label: String) {
        let lines = self.seen.map { "\($0.key): \($0.value)" }.sorted()
        print("[\(label) coverage] " + lines.joined(separator: ", "))
    }

    func expectAll(of cases: [Case], sourceLocation: SourceLocation = #_sourceLocation) {
        for item in cases {
            #expect(self.seen[item, default: 0] > 0, "no scenario produced \(item)", sourceLocation: sourceLocation)
        }
    }
}

/// The checks every scenario goes through (see ``InteropTests``).
struct ScenarioChecker {
    let pycrdt: Oracle
    let yjs: Oracle
    var failures = 0
    var coverage = Coverage()

    init(pycrdt: Oracle, yjs: Oracle) {
        self.pycrdt = pycrdt
        self.yjs = yjs
    }

    mutating func fail(_ seed: UInt64, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        self.failures += 1
        Issue.record("seed \(seed): \(message)", sourceLocation: sourceLocation)
    }

    /// Runs `body`, recording an error it throws (an oracle refusing Tandem's output, say) as a
    /// failure of this seed.
    mutating func checking(_ seed: UInt64, _ body: (inout ScenarioChecker) throws -> Void) throws {
        do {
            try body(&self)
        } catch {
            self.fail(seed, "\(error)")
        }
    }

    mutating func check(seed: UInt64, updates: [[UInt8]], full: [UInt8], content expected: String?) throws {
        var rng = SeededGenerator(seed: seed)
        // What pycrdt makes of the original updates, applied in the order they were made. (Not of
        // Yjs's `full` state: yrs resolves some concurrent formatting differently when it gets one
        // update holding everything than when it gets the edits one by one.)
        let content = try expected ?? (try self.pycrdt.request(["op": "content", "updates": Hex.list(updates)])["content"] as? String)

        // Decode → encode is byte-exact for everything the implementation wrote.
        var decoded: [YUpdate] = []
        for update in updates + [full] {
            do {
                let value = try YUpdate(decoding: update)
                if value.encoded() != update { self.fail(seed, "re-encoding differs: \(Hex.encode(update))") }
                self.coverage.note(update: value)
                decoded.append(value)
            } catch {
                self.fail(seed, "\(error) decoding \(Hex.encode(update))")
                return
            }
        }

        // State vectors, of the whole document and of each update.
        let singles = updates + [full]
        let ours = try singles.map { try Yjs.stateVector(fromUpdate: $0) }
        let theirs = try self.yjs.byteList(try self.yjs.request(["op": "sv_many", "updates": Hex.list(singles)]), "states")
        for (index, update) in singles.enumerated() where ours[index] != theirs[index] {
            self.fail(seed, "state vector \(Hex.encode(ours[index])) ≠ Yjs \(Hex.encode(theirs[index])) of \(Hex.encode(update))")
        }
        let pycrdtStates = try self.pycrdt.byteList(
            try self.pycrdt.request(["op": "sv_many", "updates": Hex.list(singles)]), "states")
        for (index, update) in singles.enumerated() {
            let mine = try YStateVector(decoding: ours[index])
            let yrs = try YStateVector(decoding: pycrdtStates[index])
            if mine.clocks != yrs.clocks || (yrs.entries.count <= 1 && ours[index] != pycrdtStates[index]) {
                self.fail(seed, "state vector \(Hex.encode(ours[index])) ≠ pycrdt \(Hex.encode(pycrdtStates[index])) of \(Hex.encode(update))")
            }
        }

        // Merge a random partition, then the merged groups. Byte comparisons with Yjs take any
        // partition; pycrdt is given updates in an order it can apply (see the suite's notes).
        let shuffled = updates.shuffled(using: &rng)
        let merged = try self.mergeAndCompare(seed, self.partition(shuffled, using: &rng))
        let all = try self.mergeAndCompare(seed, [merged])[0]
        let inOrder = try self.mergeAndCompare(seed, self.partition(updates, using: &rng, contiguous: true))
        for update in merged + inOrder + [all] {
            let value = try YUpdate(decoding: update)
            if value.encoded() != update { self.fail(seed, "merged update does not re-encode: \(Hex.encode(update))") }
            self.coverage.note(update: value)
            if value.structs.contains(where: { if case .gc(_, let n) = $0 { n > 1 } else { false } }) {
                self.coverage.note(.mergedGC)
            }
        }
        let contents = try [inOrder, [all]].map { updates in
            do {
                return try self.pycrdt.request(["op": "content", "updates": Hex.list(updates)])["content"] as? String
            } catch {
                throw Oracle.Failure(description: "\(error) applying \(Hex.list(updates))")
            }
        }
        if contents[0] != content { self.fail(seed, "pycrdt content after the merged groups differs:\n\(contents[0] ?? "-")\n\(content ?? "-")") }
        if contents[1] != content { self.fail(seed, "pycrdt content after the merge differs:\n\(contents[1] ?? "-")\n\(content ?? "-")") }
        self.noteSurrogateSplits(in: updates, merged: merged + [all])

        // Diff against an earlier state: the document after a random number of the updates.
        let earlier = Array(updates.prefix(Int.random(in: 0...updates.count, using: &rng)))
        let built = try self.pycrdt.request(["op": "build", "updates": Hex.list(earlier)])
        let state = try self.pycrdt.bytes(built, "state")
        let diff = try Yjs.diffUpdate(all, stateVector: state)
        let yjsDiff = try self.yjs.bytes(try self.yjs.request(["op": "diff", "update": Hex.encode(all), "sv": Hex.encode(state)]), "update")
        if try !self.sameAsYjs([diff], [yjsDiff])[0] { self.fail(seed, "diff \(Hex.encode(diff)) ≠ Yjs \(Hex.encode(yjsDiff)) of \(Hex.encode(all)) at \(Hex.encode(state))") }
        let diffed = try YUpdate(decoding: diff)
        if diffed.encoded() != diff { self.fail(seed, "diff does not re-encode: \(Hex.encode(diff))") }
        self.coverage.note(update: diffed)
        let known = try YStateVector(decoding: state).clocks
        if diffed.sections.contains(where: { section in (known[section.client] ?? 0) > 0 && section.clock == known[section.client] }) {
            self.coverage.note(.diffOffset)
        }
        let caughtUp = try self.pycrdt.request(["op": "apply", "handle": built["handle"] as Any, "updates": [Hex.encode(diff)]])
        if caughtUp["content"] as? String != content {
            self.fail(seed, "pycrdt content after the diff differs:\n\(caughtUp["content"] as? String ?? "-")\n\(content ?? "-")")
        }
    }

    /// Whether each of Tandem's updates is the one Yjs wrote. Byte for byte, except for how values
    /// are written: Tandem keeps every value's bytes as the client wrote them, while Yjs reads
    /// values into JavaScript and writes them back (a float32 that holds an integer becomes a
    /// varInt, JSON is re-stringified, duplicate object keys collapse). So where the bytes differ,
    /// both updates are passed through Yjs's own re-writing (which keeps every struct, clock and
    /// boundary) and must then be identical.
    ///
    /// The Yjs here is Debian's 13.5.43, which writes delete-set clients in the order it met them;
    /// since 13.6 (yjs commit da052bdb) Yjs sorts them in descending order, as Tandem does. So
    /// Yjs's delete set is sorted that way before comparing.
    mutating func sameAsYjs(_ ours: [[UInt8]], _ theirs: [[UInt8]]) throws -> [Bool] {
        var same = zip(ours, theirs).map { $0 == $1 }
        self.coverage.note(.identicalToYjs, count: same.filter { $0 }.count)
        let theirs = try theirs.enumerated().map { index, update in same[index] ? update : try Self.sortingDeleteSet(update) }
        for index in same.indices where !same[index] && ours[index] == theirs[index] {
            same[index] = true
            self.coverage.note(.identicalToYjsWithDeleteSetSorted)
        }
        let differing = same.indices.filter { !same[$0] }
        guard !differing.isEmpty else { return same }
        let normalized = try self.yjs.byteList(
            try self.yjs.request(["op": "normalize", "updates": Hex.list(differing.map { ours[$0] } + differing.map { theirs[$0] })]),
            "updates")
        for (position, index) in differing.enumerated() where normalized[position] == normalized[differing.count + position] {
            same[index] = true
            self.coverage.note(.identicalToYjsOnceValuesRewritten)
        }
        return same
    }

    /// Splits `updates` into one to four non-empty groups: at random, or as consecutive runs.
    func partition(_ updates: [[UInt8]], using rng: inout SeededGenerator, contiguous: Bool = false) -> [[[UInt8]]] {
        guard !updates.isEmpty else { return [] }
        let count = Int.random(in: 1...min(4, updates.count), using: &rng)
        if contiguous {
            let cuts = Array((1..<updates.count).shuffled(using: &rng).prefix(count - 1)).sorted()
            return zip([0] + cuts, cuts + [updates.count]).map { Array(updates[$0..<$1]) }
        }
        var groups = Array(repeating: [[UInt8]](), count: count)
        for update in updates { groups[Int.random(in: 0..<count, using: &rng)].append(update) }
        return groups.filter { !$0.isEmpty }
    }

    /// Merges each group with Tandem and with Yjs, and compares.
    mutating func mergeAndCompare(_ seed: UInt64, _ groups: [[[UInt8]]]) throws -> [[UInt8]] {
        let merged = try groups.map { try Yjs.mergeUpdates($0) }
        let yjsMerged = try self.yjs.byteList(
            try self.yjs.request(["op": "merge_many", "groups": groups.map(Hex.list)]), "updates")
        for (index, same) in try self.sameAsYjs(merged, yjsMerged).enumerated() where !same {
            if try Self.hasItemAndGCAtOneClock(groups[index]) {
                // Yjs's order is V8's, not a rule (see Yjs.mergeUpdates): content is checked instead.
                self.coverage.note(.itemAndGCAtOneClock)
                continue
            }
            self.fail(seed, "merge \(Hex.encode(merged[index])) ≠ Yjs \(Hex.encode(yjsMerged[index])) of \(Hex.list(groups[index]))")
        }
        return merged
    }

    /// Whether two of the updates hold the same clock as different kinds, an item in one and a
    /// GC in another: there Yjs's mergeUpdates sorts with a comparator that is not an order.
    static func hasItemAndGCAtOneClock(_ updates: [[UInt8]]) throws -> Bool {
        var kinds: [YID: Set<Bool>] = [:]
        for update in updates {
            for block in try YUpdate(decoding: update).structs {
                switch block {
                case .skip: continue
                case .gc: kinds[block.id, default: []].insert(true)
                case .item: kinds[block.id, default: []].insert(false)
                }
            }
        }
        return kinds.values.contains { $0.count == 2 }
    }

    static func sortingDeleteSet(_ bytes: [UInt8]) throws -> [UInt8] {
        var update = try YUpdate(decoding: bytes)
        update.deleteSet.clients.sort { $0.client > $1.client }
        return update.encoded()
    }

    /// Notes whether a merge cut a string between the halves of a surrogate pair (the right part
    /// then starts with U+FFFD), which the comparisons above then covered.
    mutating func noteSurrogateSplits(in updates: [[UInt8]], merged: [[UInt8]]) {
        for update in merged {
            guard let value = try? YUpdate(decoding: update) else { continue }
            for case .item(let item) in value.structs {
                if case .string(let text) = item.content, text.bytes.starts(with: [0xEF, 0xBF, 0xBD]) {
                    self.coverage.note(.surrogateSplit)
                }
            }
        }
    }
}
