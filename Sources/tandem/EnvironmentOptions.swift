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
        // Secure defaults and Redis bounds (issue 7)
        "jwt-secret-file", "doc-ttl", "redis-maxmemory",
        "max-docs-per-connection", "handshake-timeout-ms", "max-pending-handshakes", "max-handshake-attempts-per-sec",
        "max-pending-requests",
        // Push pipeline (issue 8)
        "max-push-wait-ms", "max-batch-pushes", "max-batch-bytes", "sync-log-mode",
        "ops-allowed-hosts", "ops-token", "ops-token-file", "ops-max-connections", "ops-max-connections-per-ip",
        "ops-idle-timeout-ms", "ops-threads", "ops-max-pending-requests", "ops-request-timeout-ms", "ops-max-list-items",
    ]

    /// Flags without a value, set by TANDEM_<NAME>=1|true|yes (0|false|no|empty: not set).
    static let serveFlags = ["insecure-dev-mode"]

    /// Options that name the same thing: one given on the command line means none of the others is taken
    /// from the environment (the command line wins, as for every option).
    static let exclusiveGroups = [["jwt-secret", "jwt-secret-file"]]

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func environmentName(for option: String) -> String {
        "TANDEM_" + option.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    static func apply(to arguments: inout [String], environment: [String: String]) throws {
        let subcommand = arguments.first.flatMap { ["serve", "token"].contains($0) ? $0 : nil } ?? "serve"
        guard subcommand == "serve", !arguments.contains("--help"), !arguments.contains("-h") else { return }
        let commandLine = arguments
        func given(_ option: String) -> Bool {
            commandLine.contains { $0 == "--" + option || $0.hasPrefix("--" + option + "=") }
        }
        for option in serve {
            let flag = "--" + option
            let groupGiven = exclusiveGroups.contains { $0.contains(option) && $0.contains(where: given) }
            if !given(option), !groupGiven, let value = environment[environmentName(for: option)] {
                arguments.append(flag)
                arguments.append(value)
            }
        }
        for option in serveFlags where !given(option) {
            let name = environmentName(for: option)
            switch environment[name]?.lowercased() {
            case nil, "", "0", "false", "no": continue
            case "1", "true", "yes": arguments.append("--" + option)
            case let other?: throw Failure(description: "\(name) must be 1, true or yes (or 0, false, no), not \(other)")
            }
        }
    }
}
