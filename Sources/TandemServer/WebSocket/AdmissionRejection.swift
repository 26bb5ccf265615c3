/// Why a handshake was refused before the upgrade (the `reason` label of tandem_admission_rejected_total).
public enum AdmissionRejection: String, Sendable, CaseIterable {
    /// Over --max-new-connections-per-sec.
    case rate
    /// Over --max-connections.
    case nodeFull = "node_full"
    /// Over --max-connections-per-user.
    case userFull = "user_full"
    /// Missing, bad or expired token.
    case unauthorized
    /// Shutting down.
    case draining
    /// Over --max-handshake-attempts-per-sec (before the token was checked).
    case attemptRate = "attempt_rate"
    /// At --max-pending-handshakes: the oldest pending socket was closed to make room for a new one.
    case pendingFull = "pending_full"
    /// A web page whose Origin --allowed-origins does not list (cross-site WebSocket hijacking).
    case origin
    /// A protocol version (`/v{N}/ws`) this server does not speak: upgraded and closed with 4400/4401.
    case protocolVersion = "protocol_version"
}
