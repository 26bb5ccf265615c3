/// Reads structured choices out of a fuzzer's bytes: each call consumes a few bytes, and an exhausted
/// input keeps answering zeros, so every input — however short — decodes to some valid program.
/// libFuzzer's mutations of the bytes then become mutations of the program (another op, another time
/// step, another record id).
public struct FuzzInput {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = UnsafeBufferPointer(start: data, count: data == nil ? 0 : size)
    }

    public var isExhausted: Bool { index >= bytes.count }
    public var remaining: Int { max(0, bytes.count - index) }

    public mutating func byte() -> UInt8 {
        guard index < bytes.count else { return 0 }
        defer { index += 1 }
        return bytes[index]
    }

    public mutating func bool() -> Bool { byte() & 1 == 1 }

    public mutating func uint16() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }

    public mutating func uint64() -> UInt64 {
        var value: UInt64 = 0
        for _ in 0..<8 { value = value << 8 | UInt64(byte()) }
        return value
    }

    /// A value in `range` (its size must fit in 16 bits; modulo bias does not matter here).
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        let span = range.upperBound - range.lowerBound + 1
        let raw = span <= 256 ? Int(byte()) : Int(uint16())
        return range.lowerBound + raw % span
    }

    public mutating func pick<T>(_ options: [T]) -> T { options[int(in: 0...(options.count - 1))] }

    /// Up to `maxCount` raw bytes.
    public mutating func bytes(maxCount: Int) -> [UInt8] {
        let count = min(int(in: 0...maxCount), remaining)
        defer { index += count }
        return Array(bytes[index..<(index + count)])
    }

    /// Everything not consumed yet.
    public mutating func rest() -> [UInt8] {
        guard index < bytes.count else { return [] }
        defer { index = bytes.count }
        return Array(bytes[index...])
    }
}

/// Stops the fuzzer with a message when an invariant does not hold (libFuzzer saves the input as a
/// crash artifact).
public func require(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #file, line: UInt = #line) {
    if !condition { fatalError("invariant violated: \(message())", file: file, line: line) }
}

/// `stream` cut into reads of `sizes` bytes, used in turn (the last read may be shorter); one read of all of it
/// when `sizes` is empty. How the stream-decoding harnesses let the fuzzer choose where reads end.
public func reads(of stream: [UInt8], sizes: [Int]) -> [[UInt8]] {
    var chunks: [[UInt8]] = []
    var start = 0
    var turn = 0
    while start < stream.count {
        let size = sizes.isEmpty ? stream.count : max(1, sizes[turn % sizes.count])
        chunks.append(Array(stream[start..<min(stream.count, start + size)]))
        start += size
        turn += 1
    }
    return chunks
}
