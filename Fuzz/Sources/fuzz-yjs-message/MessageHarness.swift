@testable import TandemYjs

// y-protocols message decoding on any bytes (what a y-websocket client sends in each frame), then
// the payloads the server would decode next.
//
// Invariants:
// - decoding never traps; an error's offset lies inside the input (or at its end);
// - a decoded message re-encodes to exactly the input;
// - a sync step 1's state vector and a step 2's or update's update decode without trapping, and
//   re-encode exactly when they decode;
// - an awareness update's entries re-encode to its payload; removals are exactly the `null` states.

func invariant(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMessage(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    let message: YProtocolMessage
    do {
        message = try YProtocolMessage(decoding: bytes)
    } catch {
        invariant(error.offset >= 0 && error.offset <= bytes.count, "error offset \(error.offset) outside the input")
        return 0
    }
    invariant(message.encoded() == bytes, "decode → encode is not byte-exact")
    switch message {
    case .syncStep1(let stateVector):
        if let vector = try? YStateVector(decoding: stateVector) {
            invariant(vector.encoded() == stateVector, "state vector does not re-encode")
        }
    case .syncStep2(let update), .update(let update):
        if let decoded = try? YUpdate(decoding: update) {
            invariant(decoded.encoded() == update, "update does not re-encode")
        }
    case .awareness(let awareness):
        for entry in awareness.entries {
            invariant(entry.isRemoval == (entry.stateJSON == "null"), "removal flag")
        }
        invariant((try? YAwarenessUpdate(decoding: awareness.encoded())) == awareness, "awareness does not round-trip")
    case .permissionDenied, .queryAwareness:
        break
    }
    return 0
}
