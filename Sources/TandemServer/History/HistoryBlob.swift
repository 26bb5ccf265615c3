import CBzip2
import CZlib
import TandemCore

/// How segments and checkpoints are stored (docs/history.md). The first byte says which kind a blob is,
/// and every kind ever written still reads:
/// - `b` (since blobs v4, unless `z` is smaller): the JSON (`HistoryCodec`) in parts, each a LEB128 byte
///   length and a bzip2 stream of that part; the JSON is the parts' inflated bytes in order. bzip2
///   because history is the same few ops and record ids again and again, which its block sorting folds
///   far better than zlib's 32 KB window: on the history bench it takes the ops to 0.63× their zlib size
///   and a segment's blob from 4.55 to 3.2 bytes per commit (docs/benchmarks.md). Parts, because a
///   segment's columns and its ops compress best each alone. A part smaller than
///   100 KB is compressed with 100 KB blocks (1.2 MB of work memory rather than 7.6).
/// - `z` (blobs up to v3): one zlib stream, sync-flushed between parts.
/// - `{`: the JSON itself (the base checkpoint the sealer's Lua writes, which cannot compress).
enum HistoryBlob {
    /// Largest JSON a blob may inflate to: a corrupted or hostile key cannot make a node allocate more.
    static let maxInflatedBytes = 512 << 20

    static func pack(_ json: [UInt8]) -> [UInt8] { pack([json]) }

    /// Kind `b` or `z`, whichever is smaller: bzip2 wins on anything of some size, but its stream
    /// headers and block tables cost ~40 bytes that zlib does not pay, so small checkpoints and short
    /// segments are smaller (and faster to read) in zlib.
    static func pack(_ parts: [[UInt8]]) -> [UInt8] {
        let zlib = packZlib(parts)
        guard let bzip2 = packBzip2(parts), bzip2.count < zlib.count else { return zlib }
        return bzip2
    }

    /// Kind `b`: each part compressed alone (nil should libbz2 fail, which it does only without memory).
    static func packBzip2(_ parts: [[UInt8]]) -> [UInt8]? {
        var out: [UInt8] = [UInt8(ascii: "b")]
        for part in parts {
            guard let compressed = bzip2(part) else { return nil }
            var n = compressed.count
            while n >= 0x80 {
                out.append(UInt8(n & 0x7f) | 0x80)
                n >>= 7
            }
            out.append(UInt8(n))
            out += compressed
        }
        return out
    }

    private static func bzip2(_ input: [UInt8]) -> [UInt8]? {
        // libbz2's documented bound for one-shot compression: 1 % more than the input, plus 600 bytes.
        var length = UInt32(input.count + input.count / 100 + 600)
        var out = [UInt8](repeating: 0, count: Int(length))
        let blocks = Int32(min(9, max(1, (input.count + 99_999) / 100_000)))
        var source = input
        let status = out.withUnsafeMutableBufferPointer { output in
            source.withUnsafeMutableBufferPointer { input in
                output.baseAddress!.withMemoryRebound(to: CChar.self, capacity: output.count) { dest in
                    input.baseAddress.map { base in
                        base.withMemoryRebound(to: CChar.self, capacity: input.count) { src in
                            BZ2_bzBuffToBuffCompress(dest, &length, src, UInt32(input.count), blocks, 0, 0)
                        }
                    } ?? BZ2_bzBuffToBuffCompress(dest, &length, nil, 0, blocks, 0, 0)
                }
            }
        }
        guard status == BZ_OK else { return nil }
        out.removeSubrange(Int(length)...)
        return out
    }

    /// Kind `z`: one zlib stream of `parts` in order, with a sync flush after each but the last: each part gets
    /// Huffman codes of its own (a segment's index columns and its ops: `HistoryCodec.encodeSegmentParts`)
    /// while back-references still reach across. Level 9: sealing is off the commit path, a few ms per
    /// segment, and 2–3 % smaller than level 6.
    static func packZlib(_ parts: [[UInt8]]) -> [UInt8] {
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
        if first == UInt8(ascii: "b") { return try unpackBzip2(blob, maxBytes: maxBytes) }
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

    /// Kind `b`: the parts inflated in order, at most `maxBytes` in all.
    private static func unpackBzip2(_ blob: [UInt8], maxBytes: Int) throws(HistoryError) -> [UInt8] {
        var out: [UInt8] = []
        var at = 1
        while at < blob.count {
            var length = 0
            var shift = 0
            while true {
                guard at < blob.count, shift < 35 else { throw .corrupt("a history blob's part length is malformed") }
                let byte = blob[at]
                at += 1
                length |= Int(byte & 0x7f) << shift
                shift += 7
                if byte < 0x80 { break }
            }
            guard length > 0, length <= blob.count - at else { throw .corrupt("a history blob's part is cut short") }
            try inflateBzip2(blob[at..<(at + length)], into: &out, maxBytes: maxBytes)
            at += length
        }
        return out
    }

    /// One bzip2 stream (all of `part`), appended to `out`; throws past `maxBytes` or at trailing bytes.
    private static func inflateBzip2(_ part: ArraySlice<UInt8>, into out: inout [UInt8], maxBytes: Int) throws(HistoryError) {
        var stream = bz_stream()
        guard BZ2_bzDecompressInit(&stream, 0, 0) == BZ_OK else { throw .corrupt("bzip2 would not start") }
        defer { BZ2_bzDecompressEnd(&stream) }
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var status = BZ_OK
        var input = Array(part)
        input.withUnsafeMutableBufferPointer { source in
            source.baseAddress!.withMemoryRebound(to: CChar.self, capacity: source.count) { base in
                stream.next_in = base
                stream.avail_in = UInt32(source.count)
                while status == BZ_OK {
                    chunk.withUnsafeMutableBufferPointer { buffer in
                        buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { dest in
                            stream.next_out = dest
                            stream.avail_out = UInt32(buffer.count)
                            status = BZ2_bzDecompress(&stream)
                        }
                        out.append(contentsOf: buffer[0..<(buffer.count - Int(stream.avail_out))])
                    }
                    if out.count > maxBytes { status = BZ_MEM_ERROR }
                    // Input used up without the stream's end: cut short.
                    if status == BZ_OK && stream.avail_in == 0 && stream.avail_out > 0 { status = BZ_UNEXPECTED_EOF }
                }
            }
        }
        guard status == BZ_STREAM_END, stream.avail_in == 0 else {
            throw .corrupt("a history blob does not inflate (bzip2 \(status))")
        }
    }
}
