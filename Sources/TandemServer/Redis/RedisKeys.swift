/// Redis key and channel names for a doc.
public enum RedisKeys {
    public static func channel(_ doc: String) -> String { "tandem:{\(doc)}" }
    public static func presencePrefix(_ doc: String) -> String { "tandem:{\(doc)}:presence:" }
    public static func presence(_ doc: String, node: String) -> String { presencePrefix(doc) + node }
    public static func nodes(_ doc: String) -> String { "tandem:{\(doc)}:nodes" }

    /// The doc id of a doc channel name, if it is one.
    public static func doc(fromChannel channel: String) -> String? {
        guard channel.hasPrefix("tandem:{"), channel.hasSuffix("}") else { return nil }
        return String(channel.dropFirst("tandem:{".count).dropLast())
    }
}
