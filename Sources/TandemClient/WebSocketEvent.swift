/// What ``WebSocketClient/events`` yields: whole messages (fragments already joined) and,
/// last, the end of the connection.
public enum WebSocketEvent: Sendable, Equatable {
    /// A text message. Invalid UTF-8 is repaired with U+FFFD, as `String(decoding:as:)` does.
    case text(String)
    /// A binary message.
    case binary([UInt8])
    /// The connection is gone; always the last event.
    ///
    /// `code` is the status code of the close frame received from the server (`1000`, `1001`,
    /// `1008`, ...), or `nil` when none arrived: the TCP connection dropped, the client aborted,
    /// or the server sent a close frame without a code. `reason` is the close frame's reason text.
    case closed(code: Int?, reason: String)
}
