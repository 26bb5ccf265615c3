import Foundation

/// Small helpers for reading JSON text frames in tests, on top of `JSONSerialization`.
///
/// Paths are dot-separated keys; a numeric component indexes an array:
/// `JSON.string(message, at: "peers.0.name")`.
public enum JSON {
    public struct NotAnObject: Error, CustomStringConvertible {
        public let text: String
        public var description: String { "not a JSON object: \(self.text.prefix(500))" }
    }

    /// Parses a JSON object (a text frame, say) into a dictionary.
    public static func parse(_ text: String) throws -> [String: Any] {
        try self.parse(Data(text.utf8), text: text)
    }

    /// Parses JSON object bytes into a dictionary.
    public static func parse(_ data: Data) throws -> [String: Any] {
        try self.parse(data, text: String(decoding: data, as: UTF8.self))
    }

    /// Serializes `object` (dictionaries, arrays, strings, numbers, `NSNull`) with sorted keys.
    public static func string(from object: Any) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .fragmentsAllowed])
        return String(decoding: data, as: UTF8.self)
    }

    /// The value at `path`, or `nil` if any step is missing. `NSNull` for a JSON `null`.
    public static func value(_ root: Any, at path: String) -> Any? {
        var current: Any = root
        for component in path.split(separator: ".", omittingEmptySubsequences: true) {
            if let object = current as? [String: Any], let next = object[String(component)] {
                current = next
            } else if let array = current as? [Any], let index = Int(component), array.indices.contains(index) {
                current = array[index]
            } else {
                return nil
            }
        }
        return current
    }

    public static func string(_ root: Any, at path: String) -> String? {
        self.value(root, at: path) as? String
    }

    /// An integral JSON number; `nil` for `true`/`false`, fractions and other types.
    public static func int(_ root: Any, at path: String) -> Int? {
        guard let value = self.value(root, at: path), !self.isBool(value) else { return nil }
        return value as? Int
    }

    /// Any JSON number as a `Double`; `nil` for `true`/`false` and other types.
    public static func double(_ root: Any, at path: String) -> Double? {
        guard let value = self.value(root, at: path), !self.isBool(value) else { return nil }
        return value as? Double
    }

    /// A JSON `true`/`false`; `nil` for numbers and other types.
    public static func bool(_ root: Any, at path: String) -> Bool? {
        guard let value = self.value(root, at: path), self.isBool(value) else { return nil }
        return value as? Bool
    }

    public static func array(_ root: Any, at path: String) -> [Any]? {
        self.value(root, at: path) as? [Any]
    }

    public static func object(_ root: Any, at path: String) -> [String: Any]? {
        self.value(root, at: path) as? [String: Any]
    }

    /// `true` when `path` exists and holds JSON `null`.
    public static func isNull(_ root: Any, at path: String) -> Bool {
        self.value(root, at: path) is NSNull
    }

    private static func parse(_ data: Data, text: @autoclosure () -> String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw NotAnObject(text: text())
        }
        return object
    }

    /// JSONSerialization returns booleans as NSNumber too; their type encoding is "c" (char).
    private static func isBool(_ value: Any) -> Bool {
        guard let number = value as? NSNumber else { return false }
        return String(cString: number.objCType) == "c"
    }
}
