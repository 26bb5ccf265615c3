import CZlib
import TandemCore

/// How segments and checkpoints are stored (docs/history.md): `z` + a zlib stream of the JSON
/// (`HistoryCodec`), or the JSON itself (it starts with `{`: the base checkpoint the sealer's Lua writes,
/// which cannot compress). zlib because ops are JSON with the same field names in every commit: level 6
/// takes 4–8× off typical ops, costs well under a millisecond per segment, and Debian ships it; a packed
/// binary form would save less and need a format of its own.
enum HistoryBlob {
    /// Largest JSON a blob may inflate to: a corrupted or hostile key cannot make a node allocate more.
    static let maxInflatedBytes = 512 << 20

    static func pack(_ json: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        guard deflateInit_(&stream, 6, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return json }
        defer { deflateEnd(&stream) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(json.count))) + 1)
        out[0] = UInt8(ascii: "z")
        let written: Int? = json.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { output in
                stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
                stream.avail_in = uInt(input.count)
                stream.next_out = output.baseAddress! + 1
                stream.avail_out = uInt(output.count - 1)
                guard deflate(&stream, Z_FINISH) == Z_STREAM_END else { return nil }
                return Int(stream.total_out)
            }
        }
        guard let written else { return json }  // deflateBound is a bound: not reached in practice
        out.removeSubrange((written + 1)...)
        return out
    }

    /// The JSON of a blob; throws `.corrupt` for a stream that does not inflate, or inflates beyond
    /// `maxInflatedBytes`.
    static func unpack(_ blob: [UInt8], maxBytes: Int = maxInflatedBytes) throws(HistoryError) -> [UInt8] {
        guard let first = blob.first else { throw .corrupt("an empty history blob") }
        if first == UInt8(ascii: "{") { return blob }
        guard first == UInt8(ascii: "z") else { throw .corrupt("a history blob of an unknown kind") }
        var stream = z_stream()
        guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw .corrupt("zlib would not start")
        }
        defer { inflateEnd(&stream) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var status: Int32 = Z_OK
        blob.withUnsafeBufferPointer { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress! + 1)
            stream.avail_in = uInt(input.count - 1)
            while status == Z_OK {
                chunk.withUnsafeMutableBufferPointer { buffer in
                    stream.next_out = buffer.baseAddress
                    stream.avail_out = uInt(buffer.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    out.append(contentsOf: buffer[0..<(buffer.count - Int(stream.avail_out))])
                }
                if out.count > maxBytes { status = Z_MEM_ERROR }
                if status == Z_BUF_ERROR && stream.avail_in == 0 { break }
            }
        }
        guard status == Z_STREAM_END else { throw .corrupt("a history blob does not inflate (zlib \(status))") }
        return out
    }
}
