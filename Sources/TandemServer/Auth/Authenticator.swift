import Foundation
import JWTKit
import TandemCore

/// Who a connection belongs to and what it may join.
public struct Identity: Sendable, Equatable {
    public var user: String
    public var name: String
    public var access: DocAccess

    public init(user: String, name: String, access: DocAccess) {
        self.user = user
        self.name = name
        self.access = access
    }
}

/// Why a handshake was refused with 401.
public struct AuthenticationError: Error, Equatable, Sendable {
    public var message: String
}

/// The claims of a Tandem access token (HS256): `sub`, `name`, `exp` (required), `nbf` and `iat`
/// (optional), `docs` ({glob: "editor"|"viewer"}).
public struct TandemClaims: JWTPayload, Equatable {
    /// How far ahead of this node's clock `nbf` and `iat` may be: the issuer's clock may run a little
    /// ahead (RFC 7519 §4.1.5 allows "some small leeway"). `exp` gets none: a skewed clock must not make a
    /// token live longer than its issuer said.
    public static let clockSkewLeeway: TimeInterval = 60

    public var sub: SubjectClaim
    public var name: String?
    public var exp: ExpirationClaim
    /// Not valid before this time.
    public var nbf: NotBeforeClaim?
    /// Issued at this time; a token issued in the future is refused (a wrong issuer clock, or a token
    /// minted ahead of time to outlive a key rotation).
    public var iat: IssuedAtClaim?
    public var docs: [String: String]?

    public init(sub: String, name: String?, exp: Date, nbf: Date? = nil, iat: Date? = nil, docs: [String: String]) {
        self.sub = SubjectClaim(value: sub)
        self.name = name
        self.exp = ExpirationClaim(value: exp)
        self.nbf = nbf.map(NotBeforeClaim.init(value:))
        self.iat = iat.map(IssuedAtClaim.init(value:))
        self.docs = docs
    }

    public func verify(using algorithm: some JWTAlgorithm) async throws {
        if let reason = rejection(at: Date()) {
            throw JWTError.claimVerificationFailure(failedClaim: nil, reason: reason)
        }
    }

    /// Why these claims are not acceptable at `now` (the 401 passes the reason on to the client), or nil.
    public func rejection(at now: Date) -> String? {
        guard now < exp.value else { return "expired" }
        let latest = now.addingTimeInterval(Self.clockSkewLeeway)
        let leeway = "\(Int(Self.clockSkewLeeway)) s of clock skew allowed"
        if let nbf, nbf.value > latest {
            return "not valid before \(Self.timestamp(nbf.value)) (nbf; \(leeway))"
        }
        if let iat, iat.value > latest {
            return "issued in the future, at \(Self.timestamp(iat.value)) (iat; \(leeway))"
        }
        for role in (docs ?? [:]).values where Role(rawValue: role) == nil {
            return "docs roles must be \"editor\" or \"viewer\""
        }
        return nil
    }

    private static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}

/// Authenticates WebSocket handshakes.
///
/// With a secret: a JWT from `?token=` or `Authorization: Bearer`, verified with HS256. Without one
/// (development mode): `?user=ID&name=NAME`, editor everywhere.
public final class Authenticator: Sendable {
    public static let maxUserLength = 128
    public static let maxNameLength = 128

    private let keys: JWTKeyCollection?

    public var isDevelopmentMode: Bool { keys == nil }

    public init(secret: String?) async {
        if let secret, !secret.isEmpty {
            let keys = JWTKeyCollection()
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
            self.keys = keys
        } else {
            self.keys = nil
        }
    }

    public func authenticate(query: [String: String], authorization: String?) async -> Result<Identity, AuthenticationError> {
        guard let keys else {
            let user = query["user"].flatMap { $0.isEmpty ? nil : $0 } ?? "anon-\(SessionID.make().prefix(8))"
            let name = query["name"].flatMap { $0.isEmpty ? nil : $0 } ?? user
            guard user.count <= Self.maxUserLength, name.count <= Self.maxNameLength else {
                return .failure(AuthenticationError(message: "user and name are at most 128 characters"))
            }
            return .success(Identity(user: user, name: name, access: .everything))
        }
        var token = query["token"]
        if token == nil, let authorization, authorization.lowercased().hasPrefix("bearer ") {
            token = String(authorization.dropFirst("bearer ".count)).trimmingCharacters(in: .whitespaces)
        }
        guard let token, !token.isEmpty else {
            return .failure(AuthenticationError(message: "missing token: pass ?token=JWT or Authorization: Bearer JWT"))
        }
        do {
            let claims = try await keys.verify(token, as: TandemClaims.self)
            let user = claims.sub.value
            guard !user.isEmpty, user.count <= Self.maxUserLength else {
                return .failure(AuthenticationError(message: "token subject must be 1–128 characters"))
            }
            let grants = (claims.docs ?? [:]).sorted { $0.key < $1.key }.compactMap { pattern, role in
                Role(rawValue: role).map { (pattern: pattern, role: $0) }
            }
            let name = String((claims.name ?? user).prefix(Self.maxNameLength))
            return .success(Identity(user: user, name: name, access: DocAccess(grants: grants)))
        } catch let error as JWTError where error.errorType == .claimVerificationFailure {
            return .failure(AuthenticationError(message: "token rejected: \(error.reason ?? "expired")"))
        } catch {
            return .failure(AuthenticationError(message: "invalid token"))
        }
    }

    /// Signs a token (for `tandem token` and tests). Refuses a secret shorter than
    /// `JWTSecret.minimumBytes`, as the server does: a token signed with it could never be verified.
    public static func makeToken(secret: String, claims: TandemClaims) async throws -> String {
        try JWTSecret.check(secret, source: "the signing secret")
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return try await keys.sign(claims)
    }
}
