import Testing
import TandemServer

/// Issue 9: `tandem serve`'s options, parsed in process from the one declaration (`ServeOptions`): flags,
/// `--name=value`, TANDEM_<NAME>, which one wins, and the messages for what is refused. The process tests
/// (BoundsFlagsTests, OpsOptionsTests, SecureDefaultsProcessTests) run the same through the binary.
@Suite struct ServeOptionsTests {
    private func parse(_ arguments: [String], _ environment: [String: String] = [:]) throws(ConfigUsageError) -> ServeSettings {
        try ServeOptions.parse(arguments: arguments, environment: environment)
    }

    private func value(_ name: String, _ settings: ServeSettings) throws -> String {
        try #require(ServeOptions.all.first { $0.name == name }).value(in: settings)
    }

    private func refusal(_ arguments: [String], _ environment: [String: String] = [:]) -> String? {
        do {
            _ = try parse(arguments, environment)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func everyOptionHasOneNameOneVariableAndADescription() {
        let names = ServeOptions.all.map(\.name)
        #expect(Set(names).count == names.count, "names are unique")
        #expect(Set(ServeOptions.all.map(\.environmentName)).count == names.count, "variables are unique")
        for option in ServeOptions.all {
            #expect(option.name.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "-" }, "\(option.name)")
            #expect(option.environmentName == "TANDEM_" + option.name.uppercased().replacingOccurrences(of: "-", with: "_"))
            #expect(!option.help.isEmpty && option.help.hasSuffix("."), "\(option.name): help is a sentence")
            #expect(!option.defaultDescription.isEmpty, "\(option.name)")
        }
        // The options the tests and the docs have always used are all still there.
        for name in [
            "host", "port", "ops-host", "ops-port", "redis", "node-id", "presence-ttl-ms", "tick-ms", "presence-rate",
            "presence-burst", "large-doc-viewers", "jwt-secret", "jwt-secret-file", "insecure-dev-mode", "max-messages-per-sec",
            "max-message-bytes", "max-state-bytes", "ping-interval-ms", "max-outbound-bytes", "sweep-ms", "reconcile-ms",
            "max-new-connections-per-sec", "max-connections", "max-connections-per-user", "storm-threshold",
            "storm-resume-grace-ms", "log-retention", "max-record-bytes", "max-push-bytes", "max-push-ops", "max-doc-records",
            "max-queued-pushes", "max-docs-per-connection", "handshake-timeout-ms", "max-pending-handshakes",
            "max-handshake-attempts-per-sec", "max-pending-requests", "data-dir", "redis-server", "appendfsync", "web-root",
            "log-level", "doc-ttl", "redis-maxmemory", "ops-allowed-hosts", "ops-token", "ops-token-file",
            "ops-max-connections", "ops-max-connections-per-ip", "ops-idle-timeout-ms", "ops-threads",
            "ops-max-pending-requests", "ops-request-timeout-ms", "ops-max-list-items", "max-push-wait-ms",
            "max-batch-pushes", "max-batch-bytes", "sync-log-mode",
        ] {
            #expect(names.contains(name), "--\(name) is declared")
        }
    }

    @Test func nothingGivenMeansEveryDefault() throws {
        let settings = try parse([])
        var expected = ServerConfiguration.defaults
        expected.nodeID = "n"
        var parsed = settings.node
        parsed.nodeID = "n"
        try parsed.validate()
        for option in ServeOptions.all {
            #expect(option.value(in: settings) == option.value(in: ServeSettings()), "\(option.name)")
        }
        #expect(settings.node.tickMs == 50 && settings.node.presenceTTLMs == 2_000 && settings.node.port == 7070)
        #expect(settings.node.docTTLMs == 30 * 86_400_000)
        #expect(settings.launch.redis == nil && settings.launch.host == nil && settings.launch.logLevel == "info")
        #expect(try value("doc-ttl", settings) == "30d")
        #expect(try value("max-outbound-bytes", settings) == "8388608 (8.0 MiB)")
        #expect(expected.maxConnections == settings.node.maxConnections)
    }

    @Test func flagsTakeBothFormsAndTheLastOneWins() throws {
        let settings = try parse([
            "--tick-ms", "20", "--presence-ttl-ms=3000", "--doc-ttl", "12h", "--redis-maxmemory", "512MiB",
            "--ops-allowed-hosts", " a.example, ,b.example ", "--insecure-dev-mode", "--storm-threshold", "2.5",
            "--max-message-bytes", "4096", "--port", "1", "--port", "2",
        ])
        #expect(settings.node.tickMs == 20)
        #expect(settings.node.presenceTTLMs == 3_000)
        #expect(settings.node.docTTLMs == 12 * 3_600_000)
        #expect(settings.launch.redisMaxMemory == 512 << 20)
        #expect(settings.node.opsAllowedHosts == ["a.example", "b.example"])
        #expect(settings.node.insecureDevMode)
        #expect(settings.node.stormThreshold == 2.5)
        #expect(settings.node.limits.maxMessageBytes == 4096)
        #expect(settings.node.port == 2)
        let sync = try parse(["--sync-log-mode", "per-commit", "--max-push-wait-ms", "40", "--max-batch-bytes", "65536"])
        #expect(sync.node.syncLogMode == .perCommit)
        #expect(sync.node.pushPipelineSettings.maxPushWaitNanos == 40_000_000)
        #expect(sync.node.pushPipelineSettings.maxBatchBytes == 65_536)
        #expect(try value("sync-log-mode", sync) == "per-commit")
    }

    @Test func theEnvironmentFillsWhatTheCommandLineDidNotSay() throws {
        let environment = [
            "TANDEM_TICK_MS": "25", "TANDEM_PORT": "9000", "TANDEM_LOG_LEVEL": "debug", "TANDEM_INSECURE_DEV_MODE": "yes",
            "TANDEM_NOT_AN_OPTION": "ignored", "TANDEM_DATA_DIR": "/var/lib/tandem",
        ]
        let settings = try parse(["--port", "9001"], environment)
        #expect(settings.node.tickMs == 25)
        #expect(settings.node.port == 9001, "the command line wins")
        #expect(settings.launch.logLevel == "debug")
        #expect(settings.node.insecureDevMode)
        #expect(settings.launch.dataDirectory == "/var/lib/tandem")
        for off in ["", "0", "false", "NO"] {
            #expect(try !parse([], ["TANDEM_INSECURE_DEV_MODE": off]).node.insecureDevMode, "\(off)")
        }
        #expect(refusal([], ["TANDEM_INSECURE_DEV_MODE": "maybe"]) == "TANDEM_INSECURE_DEV_MODE must be 1, true or yes (or 0, false, no), not maybe")
    }

    @Test func aSecretOnTheCommandLineShadowsBothSecretVariables() throws {
        let fromFlag = try parse(["--jwt-secret-file", "/run/secret"], ["TANDEM_JWT_SECRET": "x", "TANDEM_JWT_SECRET_FILE": "/other"])
        #expect(fromFlag.launch.jwtSecretFile == "/run/secret")
        #expect(fromFlag.launch.jwtSecret == nil, "TANDEM_JWT_SECRET is not read once a secret is on the command line")
        let fromEnvironment = try parse([], ["TANDEM_JWT_SECRET": "x", "TANDEM_JWT_SECRET_FILE": "/other"])
        #expect(fromEnvironment.launch.jwtSecret == "x" && fromEnvironment.launch.jwtSecretFile == "/other", "both read: serve refuses the pair")
    }

    @Test func refusalsNameTheOptionAndWhatItTakes() {
        let cases: [([String], [String: String], String)] = [
            (["--tick-ms", "4"], [:], "--tick-ms must be 5–1000"),
            (["--tick-ms", "1001"], [:], "--tick-ms must be 5–1000"),
            (["--presence-ttl-ms", "199"], [:], "--presence-ttl-ms must be at least 200"),
            (["--ops-threads", "65"], [:], "--ops-threads must be 1–64"),
            (["--ops-max-connections", "0"], [:], "--ops-max-connections must be 1–1000000"),
            (["--appendfsync", "never"], [:], "--appendfsync must be everysec or always"),
            (["--log-level", "loud"], [:], "--log-level must be one of trace, debug, info, notice, warning, error, critical"),
            (["--port", "abc"], [:], "--port takes a whole number, not 'abc'"),
            (["--doc-ttl", "forever"], [:], "--doc-ttl takes 0 or a duration: 90s, 12h, 30d, not 'forever'"),
            (["--redis-maxmemory", "lots"], [:], "--redis-maxmemory takes bytes or a size such as 512MiB or 2GiB (0: no limit), not 'lots'"),
            ([], ["TANDEM_MAX_CONNECTIONS": "many"], "TANDEM_MAX_CONNECTIONS: --max-connections takes a whole number, not 'many'"),
            ([], ["TANDEM_MAX_CONNECTIONS": "0"], "--max-connections must be at least 1"),
            (["--no-such-option", "1"], [:], "unknown option '--no-such-option'"),
            (["--tick-ms"], [:], "missing value for --tick-ms <ms>"),
            (["--tick-ms", "--port", "1"], [:], "missing value for --tick-ms <ms>"),
            (["--insecure-dev-mode=yes"], [:], "--insecure-dev-mode takes no value"),
            (["stray"], [:], "unexpected argument 'stray'"),
            (["--sync-log-mode", "classic"], [:], "--sync-log-mode takes batch or per-commit, not 'classic'"),
            (["--max-push-wait-ms", "0"], [:], "--max-push-wait-ms must be 1–60000"),
            (["--max-batch-pushes", "1001"], [:], "--max-batch-pushes must be 1–1000"),
            (["--max-queued-pushes", "0"], [:], "--max-queued-pushes must be 1–10000000"),
        ]
        for (arguments, environment, message) in cases {
            #expect(refusal(arguments, environment) == message, "\(arguments) \(environment)")
        }
    }

    @Test func aConfigurationBuiltInCodeKeepsTheDeclaredBoundsAndTheRules() {
        func message(_ change: (inout ServerConfiguration) -> Void) -> String? {
            var config = ServerConfiguration(nodeID: "n", redisURL: "redis://127.0.0.1:6379")
            change(&config)
            do {
                try config.validate()
                return nil
            } catch {
                return error.message
            }
        }
        #expect(message { _ in } == nil)
        #expect(message { $0.tickMs = 2 } == "--tick-ms must be 5–1000")
        #expect(message { $0.opsThreads = 0 } == "--ops-threads must be 1–64")
        #expect(message { $0.maxBadFrames = 0 } == "--max-bad-frames must be at least 1")
        #expect(message { $0.tickMs = 1000; $0.presenceTTLMs = 1500 } == "--tick-ms must be well below --presence-ttl-ms")
        #expect(message { $0.nodeID = "no spaces" } == "--node-id must be 1–64 characters of [A-Za-z0-9._:-]")
        #expect(message { $0.opsMaxConnections = 10; $0.opsMaxConnectionsPerIP = 11 } == "--ops-max-connections-per-ip must be 1–--ops-max-connections")
        #expect(message { $0.docTTLMs = 10_000 } == "--doc-ttl must be 0 (never expire) or at least 1m (and 10 × --reconcile-ms)")
        #expect(message { $0.host = "0.0.0.0" }?.hasPrefix("refusing development mode on --host 0.0.0.0") == true)
    }

    @Test func durationsAreShownAsTheyAreWritten() {
        #expect(OptionValues.describe(durationMs: 0) == "0")
        #expect(OptionValues.describe(durationMs: 30 * 86_400_000) == "30d")
        #expect(OptionValues.describe(durationMs: 90_000) == "90s")
        #expect(OptionValues.describe(durationMs: 1_500) == "1500ms")
        for ms: Int64 in [0, 1, 999, 60_000, 5_400_000, 86_400_000 * 7] {
            #expect(OptionValues.durationMs(OptionValues.describe(durationMs: ms)) == ms, "\(ms)")
        }
    }

    /// `--event-loops`: one per core unless given; a number in 1...256, from the flag or TANDEM_EVENT_LOOPS.
    @Test func eventLoopsDefaultToTheCoresAndTakeAWholeNumberInRange() throws {
        let unset = try parse([])
        #expect(unset.launch.eventLoops == nil && unset.launch.eventLoopThreads >= 1)
        #expect(try parse(["--event-loops", "1"]).launch.eventLoopThreads == 1)
        #expect(try parse([], ["TANDEM_EVENT_LOOPS": "3"]).launch.eventLoopThreads == 3)
        #expect(try parse(["--event-loops=2"], ["TANDEM_EVENT_LOOPS": "3"]).launch.eventLoopThreads == 2)
        for bad in ["0", "257", "-1"] {
            let message = refusal(["--event-loops", bad])
            #expect(message?.contains("--event-loops must be 1–256") == true, "\(bad): \(message ?? "accepted")")
        }
        for bad in ["two", "", "1.5"] {
            let message = refusal(["--event-loops", bad])
            #expect(message?.contains("--event-loops takes a whole number") == true, "\(bad): \(message ?? "accepted")")
        }
    }
}
