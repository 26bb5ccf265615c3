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
    /// A WebSocket protocol error (bad framing, oversized frame).
    case protocolError = "protocol_error"
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
    /// Missed two WebSocket pings.
    case pingTimeout
    /// Outbound bytes over `--max-outbound-bytes`.
    case slowConsumer
    /// The session was resumed on a newer connection.
    case resumedElsewhere
    /// The node is shutting down.
    case shutdown

    /// The close code (RFC 6455 §7.4; 1013 "try again later" is IANA-registered).
    var code: WebSocketErrorCode {
        switch self {
        case .messageFlood, .badFrames: .policyViolation  // 1008
        case .binaryFrame: .unacceptableData  // 1003
        case .pingTimeout, .shutdown: .goingAway  // 1001
        case .slowConsumer: .unknown(1013)
        case .resumedElsewhere: .normalClosure  // 1000
        }
    }

    /// The `reason` label of tandem_connections_closed_total.
    var reason: CloseReason {
        switch self {
        case .messageFlood, .badFrames: .abuse
        case .binaryFrame: .unsupportedData
        case .pingTimeout: .pingTimeout
        case .slowConsumer: .slowConsumer
        case .resumedElsewhere: .resumed
        case .shutdown: .shutdown
        }
    }

    /// The close frame's text (documented in docs/protocol.md; clients may show it).
    var text: String {
        switch self {
        case .messageFlood: "message rate above limit for 5 s"
        case .badFrames: "too many bad frames"
        case .binaryFrame: "binary frames are not supported on /v1/ws"
        case .pingTimeout: "ping timeout"
        case .slowConsumer: "outbound queue over limit; reconnect with since"
        case .resumedElsewhere: "session resumed on a new connection"
        case .shutdown: "server shutting down"
        }
    }
}
