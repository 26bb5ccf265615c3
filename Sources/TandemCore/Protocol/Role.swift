/// What a session may do in a document.
public enum Role: String, Sendable, Hashable {
    /// Streams presence and pushes edits.
    case editor
    /// Streams presence; pushes are discarded with reason `read_only`. In large docs viewers only see
    /// membership changes and their own state is not broadcast.
    case viewer
}
