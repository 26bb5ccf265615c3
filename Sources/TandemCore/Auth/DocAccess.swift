/// Which docs a token grants, and with which role: the `docs` claim, `{glob pattern: "editor"|"viewer"}`.
///
/// Globs: `*` matches any run of characters (including none), `?` one character; everything else is
/// literal. When several patterns match, the most permissive role wins (editor over viewer), so a token
/// can grant `"*": "viewer"` plus `"team:*": "editor"`.
public struct DocAccess: Sendable, Equatable {
    public var grants: [(pattern: String, role: Role)]

    public init(grants: [(pattern: String, role: Role)]) { self.grants = grants }

    /// Development mode: editor everywhere.
    public static let everything = DocAccess(grants: [("*", .editor)])

    public static func == (a: DocAccess, b: DocAccess) -> Bool {
        a.grants.map(\.pattern) == b.grants.map(\.pattern) && a.grants.map(\.role) == b.grants.map(\.role)
    }

    /// The role for `doc`, or nil if no pattern matches (join is refused with `forbidden`).
    public func role(for doc: String) -> Role? {
        var best: Role?
        for grant in grants where Self.glob(grant.pattern, matches: doc) {
            if grant.role == .editor { return .editor }
            best = .viewer
        }
        return best
    }

    /// Iterative glob matching with backtracking to the last `*` (linear in practice; no recursion, so
    /// a hostile pattern cannot blow the stack).
    public static func glob(_ pattern: String, matches text: String) -> Bool {
        let p = Array(pattern.utf8)
        let t = Array(text.utf8)
        var pi = 0
        var ti = 0
        var star = -1
        var mark = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == t[ti]) {
                pi += 1
                ti += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi
                mark = ti
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}
