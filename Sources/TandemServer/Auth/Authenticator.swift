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

/// The claims of a Tandem access token (HS256): `sub`, `name`, `exp`, `docs` ({glob: "editor"|"viewer"}).
public struct TandemClaims: JWTPayload, Equatable {
    public var sub: SubjectClaim
    public var name: String?
    public var exp: ExpirationClaim
    public var docs: [String: String]?

    public init(sub: String, name: String?, exp: Date, docs: [String: String]) {
        self.sub = SubjectClaim(value: sub)
        self.name = name
        self.exp = ExpirationClaim(value: exp)
        self.docs = docs
    }

    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        for role in (docs ?? [:]).values where Role(rawValue: role) == nil {
            throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "docs roles must be \"editor\" or \"viewer\"")
        }
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

    /// Signs a token (for `tandem token` and tests).
    public static func makeToken(secret: String, claims: TandemClaims) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        return try await keys.sign(claims)
    }
}
