/// Turns TANDEM_<NAME> environment variables into `--name value` arguments for the options the
/// command line did not set.
enum EnvironmentOptions {
    /// Options that take a value, by subcommand (flags without values are not read from the environment).
    static let serve = [
        "host", "port", "ops-host", "ops-port", "redis", "node-id", "presence-ttl-ms", "tick-ms", "presence-rate",
        "presence-burst", "large-doc-viewers", "jwt-secret", "max-messages-per-sec", "max-message-bytes",
        "max-state-bytes", "ping-interval-ms", "max-outbound-bytes", "sweep-ms", "reconcile-ms",
        "max-new-connections-per-sec", "max-connections", "max-connections-per-user", "storm-threshold", "storm-resume-grace-ms",
        "log-retention", "max-record-bytes", "max-push-bytes", "max-push-ops", "max-doc-records", "max-queued-pushes", "data-dir",
        "redis-server", "appendfsync", "web-root", "log-level",
        "ops-allowed-hosts", "ops-token", "ops-token-file", "ops-max-connections", "ops-max-connections-per-ip",
        "ops-idle-timeout-ms", "ops-threads", "ops-max-pending-requests", "ops-request-timeout-ms", "ops-max-list-items",
    ]

    static func environmentName(for option: String) -> String {
        "TANDEM_" + option.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    static func apply(to arguments: inout [String], environment: [String: String]) {
        let subcommand = arguments.first.flatMap { ["serve", "token"].contains($0) ? $0 : nil } ?? "serve"
        guard subcommand == "serve", !arguments.contains("--help"), !arguments.contains("-h") else { return }
        for option in serve {
            let flag = "--" + option
            let given = arguments.contains { $0 == flag || $0.hasPrefix(flag + "=") }
            if !given, let value = environment[environmentName(for: option)] {
                arguments.append(flag)
                arguments.append(value)
            }
        }
    }
}
