/// Bounds on what a decoder accepts beyond what the input length already bounds.
///
/// Lengths and counts need no option: each element takes at least one byte, so every count is
/// checked against the bytes that remain and memory stays proportional to the input. Nesting is
/// the one thing the length does not bound (a 1 MiB input can nest a million arrays), so it has a
/// limit here; the default is far above anything an editor writes.
public struct YDecodingLimits: Sendable, Equatable {
    /// Deepest nesting of lib0 Any arrays/objects and of JSON arrays/objects (awareness states,
    /// ContentJSON, ContentEmbed, ContentFormat). Default 64. Any values are decoded recursively,
    /// one stack frame per level: keep this in the hundreds at most.
    public var maxNestingDepth: Int

    public init(maxNestingDepth: Int = 64) {
        self.maxNestingDepth = maxNestingDepth
    }
}
