import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TandemServer
import UnixSignals

/// `tandem serve` as swift-argument-parser lists it (`tandem --help`, `tandem help serve`). Its options
/// are not parser properties: TandemServer's `ServeOptions` declares each once, with its environment
/// variable, bounds and help, and `Tandem.main` hands `serve`'s arguments straight to `ServeCommand`.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a Tandem node (with an embedded redis-server unless --redis is given).",
        usage: "tandem serve [--<option> <value>]…",
        discussion: "Its options: `tandem serve --help`, or docs/configuration.md.")

    @Argument(parsing: .captureForPassthrough, help: "The options (tandem serve --help lists them).")
    var arguments: [String] = []

    func run() async throws {
        await ServeCommand.main(arguments: arguments, environment: ProcessInfo.processInfo.environment)
    }
}

/// Runs `tandem serve`: options from the command line and the environment, resolved into the node's
/// configuration, then the node as a `ServiceGroup` that SIGTERM and SIGINT shut down gracefully.
enum ServeCommand {
    /// Never returns: exits 0 after a graceful shutdown, 64 for options it refuses, 1 when the node cannot
    /// start or fails.
    static func main(arguments: [String], environment: [String: String]) async -> Never {
        if arguments.contains("--help") || arguments.contains("-h") {
            print(ServeOptions.helpText(), terminator: "")
            exit(0)
        }
        let settings: ServeSettings
        do {
            settings = try ServeOptions.parse(arguments: arguments, environment: environment)
        } catch {
            fail(error.description, code: usageExitCode)
        }
        let level = Logger.Level(rawValue: settings.launch.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tandem")

        let node: TandemNode
        do {
            let (configuration, embedded) = try resolve(settings, logger: logger)
            node = try await TandemNode(
                configuration: configuration, logger: logger,
                eventLoopThreads: settings.launch.eventLoopThreads, embeddedRedis: embedded)
        } catch let refusal as Refusal {
            fail(refusal.description, code: refusal.code)
        } catch let error as ConfigurationError {
            fail(error.message, code: usageExitCode)
        } catch {
            logger.critical("failed to start", metadata: ["error": "\(error)"])
            exit(1)
        }

        // SIGHUP re-reads --schema-dir (the node logs the outcome; a failed reload keeps the schemas in force).
        let reloads = await UnixSignalsSequence(trapping: .sighup)
        Task {
            for await _ in reloads {
                if await node.reloadSchemas() == nil { logger.notice("SIGHUP ignored: no --schema-dir to reload") }
            }
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: node)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("failed to start", metadata: ["error": "\(error)"])
            exit(1)
        }
        exit(0)
    }

    /// The node's configuration (and the embedded Redis, without `--redis`) from what the options said:
    /// secrets and the ops token read, the defaults that depend on other options chosen, every bound checked.
    static func resolve(_ settings: ServeSettings, logger: Logger) throws -> (ServerConfiguration, EmbeddedRedis?) {
        let launch = settings.launch
        guard launch.jwtSecret == nil || launch.jwtSecretFile == nil else {
            throw Refusal.usage("give --jwt-secret or --jwt-secret-file (TANDEM_JWT_SECRET or TANDEM_JWT_SECRET_FILE), not both")
        }
        guard launch.redisMaxMemory == nil || launch.redis == nil else {
            throw Refusal.usage("--redis-maxmemory sets the embedded Redis only; with --redis, set maxmemory on that Redis")
        }
        guard launch.opsToken == nil || launch.opsTokenFile == nil else {
            throw Refusal.usage("give the ops token once: --ops-token (TANDEM_OPS_TOKEN) or --ops-token-file")
        }

        // Secure defaults (issue 7): resolve the secret and the client address, and refuse development mode
        // on a reachable address before anything starts.
        let secret = try resolveSecret(launch, logger: logger)
        var config = settings.node
        config.nodeID = launch.nodeID ?? defaultNodeID()
        config.jwtSecret = secret
        config.host = launch.host ?? ServerConfiguration.defaultHost(hasSecret: secret != nil, insecureDevMode: config.insecureDevMode)
        guard secret != nil || config.insecureDevMode || ServerConfiguration.isLoopback(config.host) else {
            throw Refusal.startup(ServerConfiguration.developmentModeRefusal(host: config.host))
        }
        config.opsToken = try launch.opsToken ?? launch.opsTokenFile.map(readOpsToken(path:))
        config.webRoot = launch.webRoot ?? defaultWebRoot()

        var embedded: EmbeddedRedis?
        if let redis = launch.redis {
            config.redisURL = redis
        } else {
            let server = EmbeddedRedis(
                dataDirectory: launch.dataDirectory + "/redis", redisServer: launch.redisServer,
                appendFsync: launch.appendFsync,
                maxMemoryBytes: launch.redisMaxMemory ?? EmbeddedRedis.defaultMaxMemoryBytes(), logger: logger)
            config.redisURL = server.url
            embedded = server
        }
        try config.validate()
        return (config, embedded)
    }

    /// The secret from --jwt-secret-file or --jwt-secret (each possibly from the environment), checked.
    private static func resolveSecret(_ launch: LaunchSettings, logger: Logger) throws -> String? {
        do {
            if let file = launch.jwtSecretFile {
                let loaded = try JWTSecret.load(fromFile: file)
                if let warning = loaded.warning { logger.warning("\(warning)") }
                return loaded.secret
            }
            if let secret = launch.jwtSecret {
                if CommandLine.arguments.contains(where: { $0 == "--jwt-secret" || $0.hasPrefix("--jwt-secret=") }) {
                    logger.warning("--jwt-secret on the command line is visible to every local user (ps); use --jwt-secret-file or TANDEM_JWT_SECRET")
                }
                try JWTSecret.check(secret, source: "--jwt-secret")
                return secret
            }
        } catch let failure as JWTSecret.Failure {
            throw Refusal.startup(failure.message)
        }
        return nil
    }

    static let maxHostPrefix = 40

    static func defaultNodeID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "node"
        // At most 40 characters of the host name, so "-PID" keeps the id within the 64 --node-id allows.
        let cleaned = String(host.unicodeScalars.filter { CharacterSet.alphanumerics.contains($0) || $0 == "-" }.prefix(maxHostPrefix))
        return "\(cleaned.isEmpty ? "node" : cleaned)-\(getpid())"
    }

    /// `Web/status` next to the working directory or the package the binary was built in.
    /// The checkout's whole `Web/` tree (status page at `/`, demo at `/demo/`, `tandem.js` at `/client/`),
    /// found next to the working directory or the binary, if present.
    static func defaultWebRoot() -> String? {
        var candidates = [FileManager.default.currentDirectoryPath + "/Web"]
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        // The binary sits in .build/<triple>/<configuration>/ (or .build/<configuration>/) of the checkout.
        let levelsUpToCheckout = 5
        for _ in 0..<levelsUpToCheckout {
            candidates.append(dir.path + "/Web")
            dir = dir.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/status/index.html") }
    }

    /// The first line of an `--ops-token-file`, without its line ending.
    static func readOpsToken(path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Refusal.usage("cannot read --ops-token-file \(path)")
        }
        let token = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        guard !token.isEmpty else { throw Refusal.usage("--ops-token-file \(path) is empty") }
        return token
    }

    /// Prints `Error: message` and exits with `code`.
    private static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
        if code == usageExitCode { FileHandle.standardError.write(Data("(tandem serve --help lists the options)\n".utf8)) }
        exit(code)
    }
}

/// Options refused (as swift-argument-parser's validation failures).
let usageExitCode = ExitCode.validationFailure.rawValue

/// A reason not to start, printed as `Error: …`: a refused combination of options (exit 64) or a refusal
/// at start-up, such as a bad secret (exit 1).
struct Refusal: Error, CustomStringConvertible {
    var description: String
    var code: Int32

    static func usage(_ message: String) -> Refusal { Refusal(description: message, code: usageExitCode) }
    static func startup(_ message: String) -> Refusal { Refusal(description: message, code: 1) }
}
