import NIOWebSocket

/// Why a client connection ended (the `reason` label of tandem_connections_closed_total). A fixed set, so
/// the label stays bounded.
public enum CloseReason: String, Sendable, CaseIterable {
    /// The client sent a close frame.
    case clientClose = "client_close"
    /// The socket went away without a close frame (network loss, crashed client).
    case abrupt
    /// Missed two WebSocket pings.
    case pingTimeout = "ping_timeout"
    /// Closed with 1008: too many bad frames or a sustained message flood.
    case abuse
    /// Closed with 1003: binary frame on the JSON endpoint.
    case unsupportedData = "unsupported_data"
    /// Closed with 1013: outbound queue over the hard limit.
    case slowConsumer = "slow_consumer"
    /// Replaced by a newer connection resuming the same session.
    case resumed
    /// Closed with 1001 on shutdown.
    case shutdown
    /// A WebSocket protocol error: bad framing (1002), an oversized frame (1009), a text message that is
    /// not UTF-8 (1007).
    case protocolError = "protocol_error"
    /// A Yjs client sent bytes that are not a valid y-protocols message or Yjs update (1007).
    case invalidMessage = "invalid_message"
    /// A Yjs client went past a bound: message size (1009), update rate (1008), room size (4413).
    case limit
    /// Redis could not store a Yjs update (1013): the client reconnects and sends it again in its step 2.
    case storageUnavailable = "storage_unavailable"
}

/// The closes the server initiates, and the one table from each to what the client is told (WebSocket
/// close code and text) and how it is counted (`CloseReason`, the metric label). Call sites name the
/// close only; nothing else picks a close code for a client connection.
enum ServerClose: CaseIterable, Sendable {
    /// A sustained message flood (`AbuseMonitor`).
    case messageFlood
    /// Too many bad frames (`AbuseMonitor`).
    case badFrames
    /// A binary frame on the JSON endpoint.
    case binaryFrame
    /// A text message on the JSON endpoint that is not UTF-8.
    case invalidUTF8Text
    /// Missed two WebSocket pings.
    case pingTimeout
    /// Outbound bytes over `--max-outbound-bytes`.
    case slowConsumer
    /// The session was resumed on a newer connection.
    case resumedElsewhere
    /// The node is shutting down.
    case shutdown
    /// A text frame on /yjs/{room}.
    case yjsTextFrame
    /// Not a y-protocols message, or a malformed state vector or update.
    case yjsInvalidMessage
    /// A message over `--yjs-max-message-bytes`.
    case yjsTooLarge
    /// Updates faster than `--yjs-update-rate`.
    case yjsUpdateRate
    /// The room would pass `--yjs-max-room-bytes`.
    case yjsRoomFull
    /// An update with missing dependencies while the room holds `--yjs-max-pending-updates` of them.
    case yjsTooManyPending
    /// Redis refused or could not take an update.
    case yjsStorageUnavailable

    /// The close code (RFC 6455 §7.4; 1013 "try again later" is IANA-registered).
    var code: WebSocketErrorCode {
        switch self {
        case .messageFlood, .badFrames: .policyViolation  // 1008
        case .binaryFrame: .unacceptableData  // 1003
        case .invalidUTF8Text: .dataInconsistentWithMessage  // 1007
        case .pingTimeout, .shutdown: .goingAway  // 1001
        case .slowConsumer: .unknown(1013)
        case .resumedElsewhere: .normalClosure  // 1000
        case .yjsTextFrame: .unacceptableData  // 1003
        case .yjsInvalidMessage: .dataInconsistentWithMessage  // 1007
        case .yjsTooLarge: .messageTooLarge  // 1009
        case .yjsUpdateRate: .policyViolation  // 1008
        case .yjsRoomFull: .unknown(4413)
        case .yjsTooManyPending: .unknown(4429)
        case .yjsStorageUnavailable: .unknown(1013)
        }
    }

    /// The `reason` label of tandem_connections_closed_total.
    var reason: CloseReason {
        switch self {
        case .messageFlood, .badFrames: .abuse
        case .binaryFrame: .unsupportedData
        case .invalidUTF8Text: .protocolError
        case .pingTimeout: .pingTimeout
        case .slowConsumer: .slowConsumer
        case .resumedElsewhere: .resumed
        case .shutdown: .shutdown
        case .yjsTextFrame: .unsupportedData
        case .yjsInvalidMessage: .invalidMessage
        case .yjsTooLarge, .yjsUpdateRate, .yjsRoomFull, .yjsTooManyPending: .limit
        case .yjsStorageUnavailable: .storageUnavailable
        }
    }

    /// The close frame's text (documented in docs/protocol.md; clients may show it).
    var text: String {
        switch self {
        case .messageFlood: "message rate above limit for 5 s"
        case .badFrames: "too many bad frames"
        case .binaryFrame: "binary frames are not supported on /v1/ws"
        case .invalidUTF8Text: "text message is not valid UTF-8"
        case .pingTimeout: "ping timeout"
        case .slowConsumer: "outbound queue over limit; reconnect with since"
        case .resumedElsewhere: "session resumed on a new connection"
        case .shutdown: "server shutting down"
        case .yjsTextFrame: "text frames are not supported on /yjs; send y-protocols binary frames"
        case .yjsInvalidMessage: "not a valid y-protocols message"
        case .yjsTooLarge: "message over --yjs-max-message-bytes"
        case .yjsUpdateRate: "updates above --yjs-update-rate"
        case .yjsRoomFull: "room over --yjs-max-room-bytes"
        case .yjsTooManyPending: "room holds --yjs-max-pending-updates updates with missing dependencies"
        case .yjsStorageUnavailable: "storage unavailable; reconnect"
        }
    }
}
