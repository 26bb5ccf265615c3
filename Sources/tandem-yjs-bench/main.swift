// tandem-yjs-bench: what TandemYjs's merge, diff and state vector cost on large documents, to size
// the storage and compaction design of the /yjs endpoint (issue 10, phase 2). Prints figures, asserts
// nothing. Run a release build on a quiet machine:
//
//   swift run -c release tandem-yjs-bench [operations…]        (default: 10000 100000)
//
// The document is typing traffic: three clients each append short strings to one Y.Text after
// their own previous insert, one update per operation (as y-websocket sends them); every tenth
// operation is a deletion of an earlier character instead (an update with only a delete set).
import Foundation
import TandemYjs

func varUInt(_ value: Int, into bytes: inout [UInt8]) {
    var value = UInt64(value)
    while value > 0x7F {
        bytes.append(UInt8(value & 0x7F) | 0x80)
        value >>= 7
    }
    bytes.append(UInt8(value))
}

/// One update per operation.
func typingUpdates(operations: Int) -> [[UInt8]] {
    let clients: [UInt64] = [1_234_567_891, 987_654_321, 55_555]
    var clocks = [Int](repeating: 0, count: clients.count)
    var generator = SystemRandomNumberGenerator()
    var updates: [[UInt8]] = []
    updates.reserveCapacity(operations)
    for index in 0..<operations {
        let who = index % clients.count
        var bytes: [UInt8] = []
        if index % 10 == 9, clocks[who] > 0 {
            // Delete one earlier character of this client: no structs, one delete-set range.
            bytes = [0, 1]
            varUInt(Int(clients[who]), into: &bytes)
            bytes.append(1)
            varUInt(Int.random(in: 0..<clocks[who], using: &generator), into: &bytes)
            bytes.append(1)
        } else {
            let text = ["a", "bc", "def", "ghij"][index % 4]
            bytes = [1, 1]
            varUInt(Int(clients[who]), into: &bytes)
            varUInt(clocks[who], into: &bytes)
            if clocks[who] == 0 {
                bytes += [0x04, 0x01, 0x01, 0x74]  // ContentString under root "t"
            } else {
                bytes.append(0x84)  // ContentString with an origin
                varUInt(Int(clients[who]), into: &bytes)
                varUInt(clocks[who] - 1, into: &bytes)
            }
            varUInt(text.utf8.count, into: &bytes)
            bytes += Array(text.utf8)
            bytes.append(0)
            clocks[who] += text.utf8.count
        }
        updates.append(bytes)
    }
    return updates
}

func measure<T>(_ label: String, repeat count: Int = 1, _ body: () throws -> T) rethrows -> (T, Double) {
    let start = DispatchTime.now().uptimeNanoseconds
    var result: T! = nil
    for _ in 0..<count { result = try body() }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(count)
    return (result, seconds)
}

func format(_ seconds: Double) -> String {
    seconds >= 1 ? String(format: "%.2f s", seconds) : seconds >= 1e-3 ? String(format: "%.2f ms", seconds * 1e3) : String(format: "%.1f µs", seconds * 1e6)
}

let sizes = CommandLine.arguments.dropFirst().compactMap(Int.init)
for operations in sizes.isEmpty ? [10_000, 100_000] : sizes {
    let updates = typingUpdates(operations: operations)
    let inputBytes = updates.reduce(0) { $0 + $1.count }
    print("\(operations) operations, \(inputBytes) bytes of updates")

    let (merged, mergeAll) = try measure("merge all") { try Yjs.mergeUpdates(updates) }
    print("  mergeUpdates of all \(operations) updates: \(format(mergeAll)) (\(String(format: "%.0f", Double(operations) / mergeAll)) updates/s), \(merged.count) bytes")

    let decodedMerged = try YUpdate(decoding: merged)
    let (_, decode) = try measure("decode", repeat: 5) { try YUpdate(decoding: merged) }
    print("  decode the merged update: \(format(decode))")
    let (_, encode) = measure("encode", repeat: 5) { decodedMerged.encoded() }
    print("  encode it: \(format(encode))")

    let (vector, stateVector) = try measure("sv", repeat: 5) { try Yjs.stateVector(fromUpdate: merged) }
    print("  stateVector(fromUpdate:) of the merged update: \(format(stateVector)) (\(vector.count) bytes)")
    let (_, stateVectorDecoded) = measure("sv decoded", repeat: 20) { YStateVector(fromUpdate: decodedMerged) }
    print("  … of the decoded update: \(format(stateVectorDecoded))")

    // A peer that has the first half.
    let half = try Yjs.stateVector(fromUpdate: try Yjs.mergeUpdates(Array(updates.prefix(operations / 2))))
    let (diff, diffHalf) = try measure("diff", repeat: 5) { try Yjs.diffUpdate(merged, stateVector: half) }
    print("  diffUpdate against the state after half the operations: \(format(diffHalf)), \(diff.count) bytes")
    let (upToDate, diffNone) = try measure("diff none", repeat: 5) { try Yjs.diffUpdate(merged, stateVector: vector) }
    print("  diffUpdate against its own state vector: \(format(diffNone)), \(upToDate.count) bytes")
    let halfVector = try YStateVector(decoding: half)
    let (_, diffDecoded) = measure("diff decoded", repeat: 5) { Yjs.diffUpdate(decodedMerged, stateVector: halfVector) }
    print("  … on the decoded update: \(format(diffDecoded))")

    // Compaction step: the snapshot plus the next update, as bytes and kept decoded.
    let next = typingUpdates(operations: 1)[0]
    let (_, appendOne) = try measure("append", repeat: 5) { try Yjs.mergeUpdates([merged, next]) }
    print("  mergeUpdates(snapshot, one more update): \(format(appendOne))")
    let nextDecoded = try YUpdate(decoding: next)
    let (_, appendDecoded) = measure("append decoded", repeat: 5) { Yjs.mergeUpdates([decodedMerged, nextDecoded]) }
    print("  … kept decoded: \(format(appendDecoded))")
    // Batches of 100 and 1,000 updates folded into the snapshot.
    for batch in [100, 1000] where batch <= operations {
        let tail = Array(updates.suffix(batch))
        let (_, folded) = try measure("fold", repeat: 3) { try Yjs.mergeUpdates([merged] + tail) }
        print("  mergeUpdates(snapshot + \(batch) updates): \(format(folded))")
    }
}

// A relay batch (--yjs-relay-ms): what a room pays to merge the updates of one window into the one update
// every member gets (the merge and its encoding), per batch size; against it, each member gets one frame
// instead of one per update.
print("relay batches (typing from as many clients as updates; merged and encoded once)")
for batch in [2, 10, 20, 50] {
    var updates: [YUpdate] = []
    for client in 0..<batch {
        var bytes: [UInt8] = [1, 1]
        varUInt(1000 + client, into: &bytes)
        varUInt(40, into: &bytes)
        bytes.append(0x84)
        varUInt(1000 + client, into: &bytes)
        varUInt(39, into: &bytes)
        let text = Array("~Y\(client).123.456789012345".utf8)
        varUInt(text.count, into: &bytes)
        bytes += text
        bytes.append(0)
        updates.append(try YUpdate(decoding: bytes))
    }
    let (encoded, seconds) = measure("batch", repeat: 2000) { Yjs.mergeUpdates(updates).encoded() }
    print("  \(batch) updates: \(format(seconds)) per batch (\(format(seconds / Double(batch))) per update), \(encoded.count) bytes")
}
