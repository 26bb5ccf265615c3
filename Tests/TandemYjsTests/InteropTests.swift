import Foundation
import TandemYjs
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
/// - the updates, shuffled and split into random groups, merge to Yjs's `mergeUpdates` bytes
///   exactly, group by group, and pycrdt applying the merged groups — or their merge — reaches the
///   same content as applying the originals;
/// - for a random earlier state (a random subset of the updates applied in pycrdt), Tandem's
///   `diffUpdate` against pycrdt's state vector equals Yjs's `diffUpdate` byte for byte, and
///   pycrdt applying it to the document at that state reaches the full content.
///
/// `TANDEM_YJS_INTEROP_SEEDS` (default 150 pycrdt scenarios, a third as many Yjs ones) and
/// `TANDEM_YJS_INTEROP_FIRST_SEED` (default 1) choose the seeds: a failure names its seed, and
/// `TANDEM_YJS_INTEROP_FIRST_SEED=N TANDEM_YJS_INTEROP_SEEDS=1` replays it alone.
@Suite(.serialized) struct InteropTests {
    static var seeds: Range<UInt64> {
        let environment = ProcessInfo.processInfo.environment
        let first = environment["TANDEM_YJS_INTEROP_FIRST_SEED"].flatMap(UInt64.init) ?? 1
        let count = environment["TANDEM_YJS_INTEROP_SEEDS"].flatMap(UInt64.init) ?? 150
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
            try checker.check(
                seed: seed, updates: try pycrdt.byteList(scenario, "updates"), full: try pycrdt.bytes(scenario, "full"),
                content: scenario["content"] as? String)
            if checker.failures >= 5 { break }
        }
        #expect(checker.failures == 0)
        checker.coverage.report(label: "pycrdt")
        checker.coverage.expectAll(
            of: [.string, .embed, .format, .type, .any, .doc, .deleted, .gc, .skip, .typeRef(1), .typeRef(0), .typeRef(2),
                .typeRef(3), .typeRef(4), .typeRef(6), .anyTag(119), .anyTag(118), .anyTag(117), .anyTag(116), .anyTag(124),
                .anyTag(123), .anyTag(126), .anyTag(120), .anyTag(121), .anyTag(125), .surrogateSplit, .originAndParentSub,
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
            try checker.check(
                seed: seed, updates: try yjs.byteList(scenario, "updates"), full: try yjs.bytes(scenario, "full"),
                content: nil)
            if checker.failures >= 5 { break }
        }
        #expect(checker.failures == 0)
        checker.coverage.report(label: "yjs")
        checker.coverage.expectAll(of: [.binary, .typeRef(5), .anyTag(125), .format, .embed, .skip, .deleted, .gc])
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
    }

    private(set) var seen: [Case: Int] = [:]

    mutating func note(_ item: Case) { self.seen[item, default: 0] += 1 }

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

    mutating func check(seed: UInt64, updates: [[UInt8]], full: [UInt8], content expected: String?) throws {
        var rng = SeededGenerator(seed: seed)
        let content = try expected ?? (try self.pycrdt.request(["op": "content", "updates": [Hex.encode(full)]])["content"] as? String)

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

        // Merge a random partition, then the merged groups.
        let shuffled = updates.shuffled(using: &rng)
        let groupCount = Int.random(in: 1...min(4, max(1, shuffled.count)), using: &rng)
        var groups = Array(repeating: [[UInt8]](), count: groupCount)
        for update in shuffled { groups[Int.random(in: 0..<groupCount, using: &rng)].append(update) }
        groups = groups.filter { !$0.isEmpty }
        let merged = try groups.map { try Yjs.mergeUpdates($0) }
        let yjsMerged = try self.yjs.byteList(
            try self.yjs.request(["op": "merge_many", "groups": groups.map(Hex.list)]), "updates")
        for (index, group) in groups.enumerated() where merged[index] != yjsMerged[index] {
            self.fail(seed, "merge \(Hex.encode(merged[index])) ≠ Yjs \(Hex.encode(yjsMerged[index])) of \(Hex.list(group))")
        }
        let all = try Yjs.mergeUpdates(merged.shuffled(using: &rng))
        let yjsAll = try self.yjs.bytes(try self.yjs.request(["op": "merge", "updates": Hex.list(merged)]), "update")
        // The order of the groups does not change the merge.
        if all != yjsAll { self.fail(seed, "merge of merges \(Hex.encode(all)) ≠ Yjs \(Hex.encode(yjsAll))") }
        for update in merged + [all] {
            let value = try YUpdate(decoding: update)
            if value.encoded() != update { self.fail(seed, "merged update does not re-encode: \(Hex.encode(update))") }
            self.coverage.note(update: value)
            if value.structs.contains(where: { if case .gc(_, let n) = $0 { n > 1 } else { false } }) {
                self.coverage.note(.mergedGC)
            }
        }
        let contents = try [merged.shuffled(using: &rng), [all]].map {
            try self.pycrdt.request(["op": "content", "updates": Hex.list($0)])["content"] as? String
        }
        if contents[0] != content { self.fail(seed, "pycrdt content after the merged groups differs:\n\(contents[0] ?? "-")\n\(content ?? "-")") }
        if contents[1] != content { self.fail(seed, "pycrdt content after the merge differs:\n\(contents[1] ?? "-")\n\(content ?? "-")") }
        self.noteSurrogateSplits(in: updates, merged: merged + [all])

        // Diff against an earlier state: a random subset of the updates applied in pycrdt.
        let earlier = shuffled.filter { _ in Bool.random(using: &rng) }
        let built = try self.pycrdt.request(["op": "build", "updates": Hex.list(earlier)])
        let state = try self.pycrdt.bytes(built, "state")
        let diff = try Yjs.diffUpdate(all, stateVector: state)
        let yjsDiff = try self.yjs.bytes(try self.yjs.request(["op": "diff", "update": Hex.encode(all), "sv": Hex.encode(state)]), "update")
        if diff != yjsDiff { self.fail(seed, "diff \(Hex.encode(diff)) ≠ Yjs \(Hex.encode(yjsDiff)) of \(Hex.encode(all)) at \(Hex.encode(state))") }
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
