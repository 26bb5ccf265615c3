@testable import TandemYjs

// mergeUpdates and diffUpdate over several updates: the input is a lib0 varUint count followed by
// that many varUint8Array updates (invalid ones are dropped), so libFuzzer mutates updates that
// overlap, repeat and leave gaps in one another.
//
// Invariants:
// - merging never traps, and its result decodes and re-encodes exactly (no empty or negative
//   struct, no clock past 2^53, clients descending);
// - merging the result with any input again changes nothing a state vector sees;
// - every client an input's state vector knows is known at least as far in the merge's (clients
//   whose structs start at clock 0 without gaps in an input stay so in the merge);
// - a diff of the merge against each input's state vector decodes and re-encodes exactly.

func invariant(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
}

func reencodes(_ update: YUpdate, _ what: String) {
    let bytes = update.encoded()
    do {
        invariant(try YUpdate(decoding: bytes).encoded() == bytes, "\(what) does not re-encode")
    } catch {
        fatalError("invariant violated: \(what) does not decode: \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMerge(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var decoder = Lib0Decoder(Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size)))
    guard let count = try? decoder.readCount(minimumBytesEach: 1) else { return 0 }
    var updates: [YUpdate] = []
    for _ in 0..<min(count, 16) {
        guard let bytes = try? decoder.readVarBytes() else { break }
        if let update = try? YUpdate(decoding: bytes) { updates.append(update) }
    }
    guard !updates.isEmpty else { return 0 }

    let merged = Yjs.mergeUpdates(updates)
    reencodes(merged, "merge")
    let mergedVector = YStateVector(fromUpdate: merged).clocks
    for (index, update) in updates.enumerated() {
        for (client, clock) in YStateVector(fromUpdate: update).clocks {
            invariant(mergedVector[client, default: 0] >= clock, "merge forgot \(client) up to \(clock) of input \(index)")
        }
        let again = Yjs.mergeUpdates([merged, update])
        reencodes(again, "merge again")
        invariant(YStateVector(fromUpdate: again).clocks == mergedVector, "merging input \(index) again changed the state vector")
        reencodes(Yjs.diffUpdate(merged, stateVector: YStateVector(fromUpdate: update)), "diff against input \(index)")
    }
    return 0
}
