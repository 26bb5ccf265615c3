import ArgumentParser
import Foundation
import TandemServer

struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a client access token (JWT, HS256).",
        discussion: """
            The secret comes from --secret-file, --secret, or the environment the nodes read \
            (TANDEM_JWT_SECRET_FILE, then TANDEM_JWT_SECRET); like the nodes, it must be at least 32 bytes.
            """)

    @Option(help: "The secret the nodes run with (visible in ps; prefer --secret-file or TANDEM_JWT_SECRET).")
    var secret: String?
    @Option(name: .customLong("secret-file"), help: "A file holding the secret (trailing newline ignored).")
    var secretFile: String?
    @Option(help: "The user id (the token's sub).") var user: String
    @Option(help: "Display name (default: the user id).") var name: String?
    @Option(name: .customLong("doc"), help: "PATTERN=editor|viewer; a glob (* and ?) over doc ids. Repeatable.")
    var docs: [String] = []
    @Option(help: "Lifetime: 90s, 15m, 1h, 7d.") var ttl = "1h"

    func run() async throws {
        var grants: [String: String] = [:]
        for doc in docs {
            let parts = doc.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, ["editor", "viewer"].contains(parts[1]) else {
                throw ValidationError("--doc takes PATTERN=editor or PATTERN=viewer, got \(doc)")
            }
            grants[parts[0]] = parts[1]
        }
        // The same duration syntax as the server's options (OptionValues: 90s, 15m, 1h, 7d).
        guard let ms = OptionValues.durationMs(ttl), ms > 0 else { throw ValidationError("--ttl takes a duration: 90s, 15m, 1h or 7d") }
        let seconds = TimeInterval(ms) / 1000
        let key = try Self.resolveSecret(
            flag: secret, file: secretFile, environment: ProcessInfo.processInfo.environment,
            warn: { FileHandle.standardError.write(Data("warning: \($0)\n".utf8)) })
        let now = Date()
        let claims = TandemClaims(sub: user, name: name, exp: now.addingTimeInterval(seconds), iat: now, docs: grants)
        print(try await Authenticator.makeToken(secret: key, claims: claims))
    }

    /// The signing secret: `--secret` or `--secret-file`, else TANDEM_JWT_SECRET_FILE or TANDEM_JWT_SECRET
    /// (one of them) — the same sources and the same minimum as `tandem serve`.
    static func resolveSecret(
        flag: String?, file: String?, environment: [String: String], warn: (String) -> Void
    ) throws -> String {
        if flag != nil && file != nil { throw ValidationError("give --secret or --secret-file, not both") }
        do {
            if let flag {
                try JWTSecret.check(flag, source: "--secret")
                return flag
            }
            if file == nil, environment["TANDEM_JWT_SECRET_FILE"] != nil, environment["TANDEM_JWT_SECRET"] != nil {
                throw ValidationError("TANDEM_JWT_SECRET and TANDEM_JWT_SECRET_FILE are both set; keep one")
            }
            let path = file ?? environment["TANDEM_JWT_SECRET_FILE"]
            if let path {
                let loaded = try JWTSecret.load(fromFile: path, flag: file != nil ? "--secret-file" : "TANDEM_JWT_SECRET_FILE")
                if let warning = loaded.warning { warn(warning) }
                return loaded.secret
            }
            if let value = environment["TANDEM_JWT_SECRET"] {
                try JWTSecret.check(value, source: "TANDEM_JWT_SECRET")
                return value
            }
        } catch let failure as JWTSecret.Failure {
            throw ValidationError(failure.message)
        }
        throw ValidationError("no secret: pass --secret-file PATH (or set TANDEM_JWT_SECRET_FILE or TANDEM_JWT_SECRET)")
    }
}
