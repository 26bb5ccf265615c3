import CZlib
import TandemCore

/// How segments and checkpoints are stored (docs/history.md): `z` + a zlib stream of the JSON
/// (`HistoryCodec`), or the JSON itself (it starts with `{`: the base checkpoint the sealer's Lua writes,
/// which cannot compress). zlib because ops are JSON with the same field names in every commit: it
/// takes 4–8× off typical ops, costs well under a millisecond per segment, and Debian ships it; a packed
/// binary form would save less and need a format of its own.
enum HistoryBlob {
    /// Largest JSON a blob may inflate to: a corrupted or hostile key cannot make a node allocate more.
    static let maxInflatedBytes = 512 << 20

    static func pack(_ json: [UInt8]) -> [UInt8] { pack([json]) }

    /// One zlib stream of `parts` in order, with a sync flush after each but the last: each part gets
    /// Huffman codes of its own (a segment's index columns and its ops: `HistoryCodec.encodeSegmentParts`)
    /// while back-references still reach across. Level 9: sealing is off the commit path, a few ms per
    /// segment, and 2–3 % smaller than level 6.
    static func pack(_ parts: [[UInt8]]) -> [UInt8] {
        let total = parts.reduce(0) { $0 + $1.count }
        var stream = z_stream()
        guard deflateInit_(&stream, 9, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return parts.flatMap { $0 } }
        defer { deflateEnd(&stream) }
        // deflateBound covers one Z_FINISH; each sync flush adds at most 5 bytes (an empty stored block) and
        // a partial byte.
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(total))) + 1 + 8 * parts.count)
        out[0] = UInt8(ascii: "z")
        var ok = true
        out.withUnsafeMutableBufferPointer { output in
            stream.next_out = output.baseAddress! + 1
            stream.avail_out = uInt(output.count - 1)
            for (i, part) in parts.enumerated() where ok {
                let last = i == parts.count - 1
                part.withUnsafeBufferPointer { input in
                    stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
                    stream.avail_in = uInt(input.count)
                    let status = deflate(&stream, last ? Z_FINISH : Z_SYNC_FLUSH)
                    ok = last ? status == Z_STREAM_END : (status == Z_OK && stream.avail_in == 0 && stream.avail_out > 0)
                }
            }
        }
        guard ok else { return parts.flatMap { $0 } }  // the bound is a bound: not reached in practice
        out.removeSubrange((Int(stream.total_out) + 1)...)
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
