import Foundation
import Testing
import TandemServer
import TandemTestSupport

/// Issue 7, secure defaults: development mode only on loopback unless the operator insists, the secret
/// from a file or the environment (never only the command line), the same 32-byte minimum everywhere,
/// and `nbf`/`iat` honoured.
@Suite struct SecureDefaultsTests {
    static let secret = "secure-defaults-secret-0123456789abcdef"

    @Test func loopbackAddressesAreRecognised() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"] {
            #expect(ServerConfiguration.isLoopback(host), "\(host)")
        }
        for host in ["0.0.0.0", "::", "192.0.2.2", "10.0.0.1", "128.0.0.1", "::2", "example.com", "localhost.example.com", ""] {
            #expect(!ServerConfiguration.isLoopback(host), "\(host)")
        }
    }

    @Test func developmentModeIsRefusedOnAReachableHostUnlessTheOperatorInsists() throws {
        var config = ServerConfiguration(nodeID: "n", redisURL: "redis://127.0.0.1:6379")
        #expect(config.host == "127.0.0.1", "the library default is loopback")
        try config.validate()
        config.host = "0.0.0.0"
        do {
            try config.validate()
            Issue.record("development mode on 0.0.0.0 was accepted")
        } catch {
            #expect(error.message.contains("--jwt-secret-file"))
            #expect(error.message.contains("--insecure-dev-mode"))
            #expect(error.message.contains("--host 127.0.0.1"))
        }
        config.insecureDevMode = true
        try config.validate()
        config.insecureDevMode = false
        config.jwtSecret = Self.secret
        try config.validate()

        #expect(ServerConfiguration.defaultHost(hasSecret: false, insecureDevMode: false) == "127.0.0.1")
        #expect(ServerConfiguration.defaultHost(hasSecret: true, insecureDevMode: false) == "0.0.0.0")
        #expect(ServerConfiguration.defaultHost(hasSecret: false, insecureDevMode: true) == "0.0.0.0")
    }

    @Test func secretFilesAreTrimmedCheckedAndWarnedAboutWhenOthersCanReadThem() throws {
        let directory = try makeTemporaryDirectory(prefix: "tandem-secret")
        func write(_ name: String, _ text: String, mode: Int) throws -> String {
            let path = directory.appendingPathComponent(name).path
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
            return path
        }
        let privateFile = try write("private", Self.secret + "\n", mode: 0o600)
        let loadedPrivate = try JWTSecret.load(fromFile: privateFile)
        #expect(loadedPrivate.secret == Self.secret && loadedPrivate.warning == nil)
        let crlf = try write("crlf", Self.secret + "\r\n", mode: 0o400)
        #expect(try JWTSecret.load(fromFile: crlf).secret == Self.secret)
        let spaced = try write("spaced", " " + Self.secret + " \n", mode: 0o600)
        #expect(try JWTSecret.load(fromFile: spaced).secret == " " + Self.secret + " ", "only line breaks are trimmed")

        let shared = try write("shared", Self.secret, mode: 0o644)
        let loaded = try JWTSecret.load(fromFile: shared)
        #expect(loaded.secret == Self.secret, "a readable file is accepted (container secret mounts are 0644/0444)")
        #expect(loaded.warning?.contains("chmod 600") == true)
        #expect(loaded.warning?.contains("644") == true)

        let refusals: [(String, String)] = [
            (try write("short", "too-short\n", mode: 0o600), "at least 32"),
            (try write("empty", "\n", mode: 0o600), "empty"),
            (directory.appendingPathComponent("missing").path, "No such file"),
            (directory.path, "not a regular file"),
            (try write("huge", String(repeating: "x", count: JWTSecret.maxFileBytes + 1), mode: 0o600), "at most"),
        ]
        for (path, reason) in refusals {
            do {
                _ = try JWTSecret.load(fromFile: path)
                Issue.record("\(path) was accepted")
            } catch {
                #expect("\(error)".contains(reason), "\(path): \(error)")
                #expect("\(error)".contains("--jwt-secret-file"), "names the option")
            }
        }
    }

    @Test func tokensCannotBeSignedWithAShortSecret() async throws {
        let claims = TandemClaims(sub: "u", name: nil, exp: Date().addingTimeInterval(60), docs: [:])
        await #expect(throws: JWTSecret.Failure.self) { try await Authenticator.makeToken(secret: "short-secret", claims: claims) }
        _ = try await Authenticator.makeToken(secret: Self.secret, claims: claims)
    }

    /// `nbf` and `iat` within the skew leeway pass; beyond it they are refused with a reason; `exp` gets no
    /// leeway.
    @Test func notBeforeAndIssuedAtAreHonouredWithASmallLeeway() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let leeway = TandemClaims.clockSkewLeeway
        #expect(leeway == 60)
        func claims(exp: TimeInterval = 3600, nbf: TimeInterval? = nil, iat: TimeInterval? = nil) -> TandemClaims {
            TandemClaims(
                sub: "u", name: nil, exp: now.addingTimeInterval(exp), nbf: nbf.map(now.addingTimeInterval),
                iat: iat.map(now.addingTimeInterval), docs: [:])
        }
        func reason(_ claims: TandemClaims) -> String? { claims.rejection(at: now) }
        #expect(reason(claims()) == nil)
        #expect(reason(claims(nbf: -600, iat: -600)) == nil)
        #expect(reason(claims(nbf: leeway, iat: leeway)) == nil, "exactly the leeway ahead")
        #expect(reason(claims(nbf: leeway + 1))?.contains("not valid before") == true)
        #expect(reason(claims(nbf: 600))?.contains("nbf") == true)
        #expect(reason(claims(iat: leeway + 1))?.contains("issued in the future") == true)
        #expect(reason(claims(exp: -1)) == "expired", "exp: no leeway")
    }
}
