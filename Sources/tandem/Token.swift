import ArgumentParser
import Foundation
import TandemServer

struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a client access token (JWT, HS256).")

    @Option(help: "The secret the nodes run with (--jwt-secret).") var secret: String
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
        guard let seconds = Self.parseDuration(ttl) else { throw ValidationError("--ttl takes 90s, 15m, 1h or 7d") }
        let claims = TandemClaims(sub: user, name: name, exp: Date().addingTimeInterval(seconds), docs: grants)
        print(try await Authenticator.makeToken(secret: secret, claims: claims))
    }

    static func parseDuration(_ text: String) -> TimeInterval? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let unit = text.last, let factor = units[unit], let value = Double(text.dropLast()), value > 0 else {
            return Double(text).flatMap { $0 > 0 ? $0 : nil }
        }
        return value * factor
    }
}
