/// The `--ops-token` check of the document routes (`/api/docs/…` hand out document content and user
/// names). Pure.
enum OpsAuthorization {
    /// Whether an `Authorization` header value (nil when absent) carries `Bearer <token>`.
    ///
    /// The comparison takes the same time wherever the first difference is, and however long the
    /// presented token is: it always walks the whole expected token (whose length is not secret).
    static func allows(authorization: String?, token: String) -> Bool {
        guard let presented = bearerToken(authorization) else { return false }
        let expected = Array(token.utf8)
        let given = Array(presented.utf8)
        guard !expected.isEmpty else { return false }
        var difference: UInt8 = expected.count == given.count ? 0 : 1
        for index in 0..<expected.count {
            let other = given.isEmpty ? 0 : given[index % given.count]
            difference |= expected[index] ^ other
        }
        return difference == 0
    }

    /// Longer `Authorization` headers are refused unread: a token is at most a few hundred bytes, and the
    /// comparison is constant-time over its length.
    static let maxAuthorizationBytes = 4096

    /// The credentials of `Bearer <credentials>` (RFC 6750 §2.1; the scheme is case-insensitive).
    static func bearerToken(_ header: String?) -> Substring? {
        guard let header, header.utf8.count <= Self.maxAuthorizationBytes else { return nil }
        let trimmed = header.drop { $0 == " " }
        guard trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " else { return nil }
        let credentials = trimmed.dropFirst(7).drop { $0 == " " }
        var end = credentials.endIndex
        while end > credentials.startIndex, credentials[credentials.index(before: end)] == " " {
            end = credentials.index(before: end)
        }
        let token = credentials[..<end]
        return token.isEmpty || token.contains(" ") ? nil : token
    }
}
