/// Why `OpsHTTPServer.start()` failed.
public enum OpsHTTPServerError: Error, Equatable, CustomStringConvertible {
    /// `host` is neither an IP literal nor `localhost`.
    case invalidHost(String)
    /// A configuration value is out of range; the string names it.
    case invalidConfiguration(String)
    /// `start()` was called while the server is already running.
    case alreadyRunning
    /// libmicrohttpd could not start; `reason` is what it logged (typically
    /// `Failed to bind to port N: Address already in use`).
    case startFailed(host: String, port: Int, reason: String)

    public var description: String {
        switch self {
        case .invalidHost(let host):
            return "ops HTTP: invalid listen host '\(host)' (use an IPv4/IPv6 literal or localhost)"
        case .invalidConfiguration(let what):
            return "ops HTTP: invalid configuration: \(what)"
        case .alreadyRunning:
            return "ops HTTP: server is already running"
        case .startFailed(let host, let port, let reason):
            return "ops HTTP: cannot listen on \(host) port \(port): \(reason)"
        }
    }
}
