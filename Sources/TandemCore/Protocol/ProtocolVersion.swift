/// Which versions of the client protocol this server speaks, and what happens to a client that asks for
/// another one.
///
/// A client names its version in the path, `/v{N}/ws`. A newer client meeting an older server used to get
/// HTTP 404, which a browser cannot read (to the page it looks like a network failure, so clients retried
/// forever). Now any `/v{N}/ws` is upgraded, and a version the server does not speak is closed at once
/// with a close code the page can read and act on: stop reconnecting, tell the user to reload or to wait
/// for the server's upgrade. The `welcome` states the range (`"protocols":{"min":1,"max":1}`) so a client
/// that speaks several versions can tell which ones it may use.
public enum ProtocolVersion {
    /// The versions this server speaks.
    public static let supported: ClosedRange<Int> = 1...1

    /// The result of a client asking for version N.
    public enum Negotiation: Equatable, Sendable {
        /// Speak version N.
        case speak(Int)
        /// N is below every version this server speaks: close 4400.
        case clientTooOld(requested: Int)
        /// N is above every version this server speaks: close 4401.
        case serverTooOld(requested: Int)
    }

    /// Close code for a client whose protocol version is older than any this server speaks (`client_too_old`).
    public static let clientTooOldCloseCode = 4400
    /// Close code for a client whose protocol version is newer than any this server speaks (`server_too_old`).
    public static let serverTooOldCloseCode = 4401

    /// The version N of a client path `/v{N}/ws` (1–4 digits, no leading zero), or nil for any other path
    /// (`/v1/ws/`, `/v01/ws`, `/v/ws` and `/v99999/ws` are other paths: 404).
    public static func requested(inPath path: some StringProtocol) -> Int? {
        let bytes = Array(path.utf8)
        guard bytes.count >= 6, bytes.count <= 9, bytes[0] == UInt8(ascii: "/"), bytes[1] == UInt8(ascii: "v"),
            bytes.suffix(3) == Array("/ws".utf8)
        else { return nil }
        let digits = bytes[2..<(bytes.count - 3)]
        guard !digits.isEmpty, digits.first != UInt8(ascii: "0"),
            digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        return digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
    }

    public static func negotiate(_ requested: Int) -> Negotiation {
        if supported.contains(requested) { return .speak(requested) }
        return requested < supported.lowerBound ? .clientTooOld(requested: requested) : .serverTooOld(requested: requested)
    }
}

extension ProtocolVersion.Negotiation {
    /// The close code and reason (at most 123 bytes, RFC 6455 §5.5) of a version this server does not speak.
    public var refusal: (code: Int, reason: String)? {
        let range = "\(ProtocolVersion.supported.lowerBound)–\(ProtocolVersion.supported.upperBound)"
        switch self {
        case .speak:
            return nil
        case .clientTooOld(let requested):
            return (ProtocolVersion.clientTooOldCloseCode, "client_too_old: this server speaks protocol \(range), not \(requested)")
        case .serverTooOld(let requested):
            return (ProtocolVersion.serverTooOldCloseCode, "server_too_old: this server speaks protocol \(range), not \(requested)")
        }
    }
}
