/// Redis Cluster's key → hash slot mapping: `CRC16(key) mod 16384`, where only the part inside the first
/// non-empty `{…}` is hashed when there is one (a *hash tag*), so `tandem:{doc}:clock` and
/// `tandem:{doc}:log` land in the same slot. See the Redis Cluster specification, "Keys hash tags".
public enum ClusterSlot {
    /// Number of hash slots in every Redis Cluster.
    public static let count = 16384

    /// The slot of `key`, as `CLUSTER KEYSLOT` computes it.
    public static func slot(forKey key: String) -> Int {
        slot(forKey: Array(key.utf8))
    }

    /// The slot of a binary key, as `CLUSTER KEYSLOT` computes it.
    public static func slot<Bytes: RandomAccessCollection>(forKey key: Bytes) -> Int
    where Bytes.Element == UInt8, Bytes.Index == Int {
        let hashed = hashTag(of: key)
        return Int(crc16(key[hashed]) & UInt16(count - 1))
    }

    /// The range of `key` that is hashed: the bytes between the first `{` and the first `}` after it
    /// when that is non-empty, else the whole key (so `{}x` and `x{` hash whole).
    static func hashTag<Bytes: RandomAccessCollection>(of key: Bytes) -> Range<Int>
    where Bytes.Element == UInt8, Bytes.Index == Int {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")) else { return key.startIndex..<key.endIndex }
        let afterOpen = open + 1
        guard let close = key[afterOpen...].firstIndex(of: UInt8(ascii: "}")), close > afterOpen else {
            return key.startIndex..<key.endIndex
        }
        return afterOpen..<close
    }

    /// CRC-16/XMODEM (polynomial 0x1021, initial value 0, no reflection), the variant the
    /// specification prescribes; `crc16("123456789") == 0x31C3`.
    static func crc16<Bytes: Sequence>(_ bytes: Bytes) -> UInt16 where Bytes.Element == UInt8 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int((crc >> 8) ^ UInt16(byte))]
        }
        return crc
    }

    /// One entry per byte value: the CRC of that byte shifted through the polynomial eight times.
    private static let table: [UInt16] = (0..<256).map { value in
        var crc = UInt16(value) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}
