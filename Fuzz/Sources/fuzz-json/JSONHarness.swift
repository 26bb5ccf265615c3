import FuzzSupport
import TandemCore

// JSONParser.parse on arbitrary bytes (every client frame, node message and Redis value goes through it).
//
// Invariants:
// - it never traps; a failure's offset lies inside the input;
// - parse → serialize → parse gives an equal value, and serializing that gives the same bytes
//   (the sync relay's byte-for-byte convergence relies on canonical serialization);
// - the depth limit holds exactly: a value nested D deep parses with maxDepth D and fails with D - 1;
// - the number accessors never trap on any lexeme the parser accepts.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: data == nil ? 0 : size)
    let value: JSONValue
    do {
        value = try JSONParser.parse(bytes)
    } catch {
        require(error.offset >= 0 && error.offset <= bytes.count, "error offset \(error.offset) outside 0...\(bytes.count)")
        return 0
    }
    let depth = nesting(of: value)
    require(depth <= JSONParser.defaultMaxDepth, "accepted nesting \(depth) > \(JSONParser.defaultMaxDepth)")
    require((try? JSONParser.parse(bytes, maxDepth: depth)) == value, "does not parse with maxDepth = its depth \(depth)")
    if depth > 0 {
        require((try? JSONParser.parse(bytes, maxDepth: depth - 1)) == nil, "parses with maxDepth \(depth - 1) < its depth \(depth)")
    }

    let serialized = value.serialized
    let reparsed: JSONValue
    do {
        reparsed = try JSONParser.parse(serialized)
    } catch {
        fatalError("serialized form does not parse (\(error)): \(String(decoding: serialized, as: UTF8.self))")
    }
    require(reparsed == value, "round trip changed the value: \(String(decoding: serialized, as: UTF8.self))")
    require(reparsed.serialized == serialized, "serialization is not canonical")
    touchNumbers(value)
    return 0
}

private func nesting(of value: JSONValue) -> Int {
    switch value {
    case .array(let items): return 1 + (items.map(nesting).max() ?? 0)
    case .object(let members): return 1 + (members.values.map(nesting).max() ?? 0)
    default: return 0
    }
}

private func touchNumbers(_ value: JSONValue) {
    switch value {
    case .number(let lexeme):
        if let u = value.uint64Value { require(String(u) == lexeme, "uint64Value \(u) of \(lexeme)") }
        if let i = value.intValue { require(Int(lexeme) == i, "intValue of \(lexeme)") }
    case .array(let items): items.forEach(touchNumbers)
    case .object(let members): members.values.forEach(touchNumbers)
    default: break
    }
}
