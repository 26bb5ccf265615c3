@testable import TandemYjs

// YUpdate decoding on any bytes, then everything Tandem computes from an update.
//
// Invariants:
// - decoding never traps; an error's offset lies inside the input (or at its end);
// - a decoded update re-encodes to exactly the input (decoding refuses every non-canonical form);
// - its state vector decodes and re-encodes exactly, and names each client at most once;
// - merging the update alone gives it back; merging it with itself gives an update that decodes,
//   re-encodes exactly and has the same state vector;
// - a diff against any state vector (here: the update's own, halved) decodes and re-encodes
//   exactly, and holds no struct the peer has entirely;
// - a diff against the update's own state vector has no structs, unless the update has gaps.

func invariant(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
}

func reencodes(_ bytes: [UInt8], _ what: String) -> YUpdate {
    do {
        let update = try YUpdate(decoding: bytes)
        invariant(update.encoded() == bytes, "\(what) does not re-encode")
        return update
    } catch {
        fatalError("invariant violated: \(what) does not decode: \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzUpdate(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    let update: YUpdate
    do {
        update = try YUpdate(decoding: bytes)
    } catch {
        invariant(error.offset >= 0 && error.offset <= bytes.count, "error offset \(error.offset) outside the input")
        return 0
    }
    invariant(update.encoded() == bytes, "decode → encode is not byte-exact")

    let vector = YStateVector(fromUpdate: update)
    let vectorBytes = vector.encoded()
    invariant((try? YStateVector(decoding: vectorBytes)) == vector, "state vector does not round-trip")
    invariant(Set(vector.entries.map(\.client)).count == vector.entries.count, "state vector repeats a client")

    invariant(Yjs.mergeUpdates([update]) == update, "merging one update changed it")
    let doubled = Yjs.mergeUpdates([update, update])
    let doubledUpdate = reencodes(doubled.encoded(), "merge with itself")
    invariant(YStateVector(fromUpdate: doubledUpdate).clocks == vector.clocks, "merge with itself changed the state vector")

    let halved = YStateVector(entries: vector.entries.map { .init(client: $0.client, clock: $0.clock / 2) })
    let diff = reencodes(Yjs.diffUpdate(update, stateVector: halved).encoded(), "diff")
    let known = halved.clocks
    for block in diff.structs where !block.isSkip {
        invariant(block.endClock > known[block.id.client] ?? 0, "diff holds \(block.id) the peer has")
    }
    let hasGaps = update.structs.contains(where: \.isSkip)
        || update.sections.contains { $0.clock != 0 && !$0.structs.isEmpty }
    if !hasGaps {
        let nothing = Yjs.diffUpdate(update, stateVector: vector)
        invariant(nothing.sections.isEmpty, "diff against its own state vector is not empty")
    }
    return 0
}
