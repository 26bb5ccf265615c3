import Foundation

/// Parsing of option values with units (`--doc-ttl 30d`, `--redis-maxmemory 2GiB`): pure, so the
/// command line and tests share one definition, and every overflow is a refusal rather than a trap.
public enum OptionValues {
    /// The units a duration may be written in, largest first.
    static let durationUnits: [(suffix: String, ms: Int64)] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)]

    /// Milliseconds of `text`: a number with a unit — `ms`, `s`, `m`, `h`, `d` (`90s`, `12h`, `30d`) —
    /// or a bare `0`. Nil for anything else (negative, fractional milliseconds, no unit, overflow).
    public static func durationMs(_ text: String) -> Int64? {
        if text == "0" { return 0 }
        for unit in durationUnits.reversed() where text.hasSuffix(unit.suffix) {
            let number = text.dropLast(unit.suffix.count)
            // "5ms" also ends in "s": only accept the unit whose prefix is a plain number.
            guard !number.isEmpty, number.allSatisfy(\.isASCIIDigit), let value = Int64(number) else { continue }
            let (ms, overflow) = value.multipliedReportingOverflow(by: unit.ms)
            return overflow ? nil : ms
        }
        return nil
    }

    /// Bytes of `text`: a plain number of bytes, or a number with a binary unit — `KiB`/`KB`/`K`,
    /// `MiB`/`MB`/`M`, `GiB`/`GB`/`G`, `TiB`/`TB`/`T` (any case; all powers of 1024, as in Redis's
    /// `kb`/`mb`/`gb`) — e.g. `512MiB`, `2gb`. Nil for anything else or on overflow.
    public static func bytes(_ text: String) -> UInt64? {
        let lower = text.lowercased()
        let digits = lower.prefix(while: \.isASCIIDigit)
        guard !digits.isEmpty, let value = UInt64(digits) else { return nil }
        let unit = lower.dropFirst(digits.count)
        let exponents: [Substring: UInt64] = [
            "": 0, "b": 0, "k": 1, "kb": 1, "kib": 1, "m": 2, "mb": 2, "mib": 2, "g": 3, "gb": 3, "gib": 3, "t": 4, "tb": 4,
            "tib": 4,
        ]
        guard let exponent = exponents[unit] else { return nil }
        var result = value
        for _ in 0..<exponent {
            let (next, overflow) = result.multipliedReportingOverflow(by: 1024)
            if overflow { return nil }
            result = next
        }
        return result
    }

    /// `ms` in the largest unit that divides it (`30d`, `90s`, `0`): the form `durationMs` reads back.
    public static func describe(durationMs ms: Int64) -> String {
        guard ms != 0 else { return "0" }
        let unit = durationUnits.first { ms % $0.ms == 0 } ?? ("ms", 1)
        return "\(ms / unit.ms)\(unit.suffix)"
    }

    /// `bytes` for humans (`1.5 GiB`), for log lines.
    public static func describe(bytes: UInt64) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var index = 0
        while value >= 1024 && index < units.count - 1 {
            value /= 1024
            index += 1
        }
        return index == 0 ? "\(bytes) bytes" : "\(String(format: "%.1f", value)) \(units[index])"
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
