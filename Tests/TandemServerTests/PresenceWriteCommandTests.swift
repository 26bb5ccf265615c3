@testable import TandemCore
import TandemRedis
@testable import TandemServer
import Testing

/// Issue 14: a tick's presence write is written straight into its `EVALSHA` command
/// (`PresenceStore.command`). Its arguments must be exactly what `PresenceScripts.docWrite` reads (KEYS: node
/// hash, nodes zset; ARGV: node, ttlMs, full, refresh, channel, payload or its head, upsertCount, own
/// subscribers, the payload's tail, (sid, entry) pairs, sids to delete), each entry exactly its own
/// encoding, whether it is spliced from the published message or (nothing published) encoded on its own;
/// a message listing the written entries is sent as its head and tail only (the script joins it again).
@Suite struct PresenceWriteCommandTests {
    static let keys = PresenceStore.Keys(channel: "tandem:{d}", hash: "tandem:{d}:presence:n1", nodes: "tandem:{d}:nodes")

    static func entry(_ sid: String, _ version: UInt64, _ x: Int) -> PresenceEntry {
        PresenceEntry(
            sid: sid, user: "u-\(sid) \"q\"", name: "ü\n", role: .editor, node: "n1", version: version,
            state: .object(["x": .number("\(x)")]))
    }

    /// The command as the array-of-arguments form built it before (the script's documented layout).
    /// - Parameter tail: the message's tail when it is sent split (`message` is then its head).
    static func expected(_ write: PresenceWrite, message: [UInt8], tail: [UInt8] = []) -> [[UInt8]] {
        var args: [any RedisArgument] = [
            "EVALSHA", PresenceScripts.docWrite.sha1, 2, keys.hash, keys.nodes, "n1", 30_000, write.full ? "1" : "0",
            write.refresh ? "1" : "0", keys.channel, message, write.upserts.count, 1, tail,
        ]
        for entry in write.upserts {
            args.append(entry.sid)
            args.append(entry.encoded)
        }
        for sid in write.deletes { args.append(sid) }
        return RedisCommand(args).arguments
    }

    @Test func publishedEntriesAreSplicedExactly() {
        let upserts = [Self.entry("s1", 3, 15), Self.entry("s\"2", 12_345_678_901, -2)]
        let publish = NodeMessage.presence(node: "n1", upserts: upserts, removals: ["gone"], full: false)
        let write = PresenceWrite(upserts: upserts, deletes: ["gone"], full: false, refresh: true, publish: publish)
        var ranges: [Range<Int>]?
        let message = publish.encode(upsertRanges: &ranges)
        let command = PresenceStore.command(PresenceScripts.docWrite, keys: Self.keys, node: "n1", ttlMs: 30_000, ownSubscribers: 1, write)
        let found = ranges ?? []
        let head = Array(message[..<found[0].lowerBound])
        let tail = Array(message[found[1].upperBound...])
        #expect(command.arguments == Self.expected(write, message: head, tail: tail))
        #expect(command.count == 14 + 2 * upserts.count + 1)
        #expect(command.name == "EVALSHA")
        // Each entry once in the command: in the hash's pairs, not again inside the message.
        for entry in upserts {
            #expect(command.arguments.filter { $0 == entry.encoded }.count == 1)
            #expect(!head.contains(entry.encoded) && !tail.contains(entry.encoded))
        }
    }

    @Test func entriesAreEncodedWhenNothingIsPublished() {
        let upserts = [Self.entry("a", 1, 0), Self.entry("b", 2, 7)]
        let write = PresenceWrite(upserts: upserts, deletes: ["c", "d"], full: true, refresh: false, publish: nil)
        let command = PresenceStore.command(PresenceScripts.docWrite, keys: Self.keys, node: "n1", ttlMs: 30_000, ownSubscribers: 1, write)
        #expect(command.arguments == Self.expected(write, message: []))
    }

    @Test func entriesAreEncodedWhenThePublishedOnesDiffer() {
        // Not the same entries (a different version): splicing them would store the wrong bytes.
        let upserts = [Self.entry("a", 2, 1)]
        let publish = NodeMessage.presence(node: "n1", upserts: [Self.entry("a", 1, 1)], removals: [], full: false)
        let write = PresenceWrite(upserts: upserts, deletes: [], full: false, refresh: false, publish: publish)
        var ranges: [Range<Int>]?
        let message = publish.encode(upsertRanges: &ranges)
        let command = PresenceStore.command(PresenceScripts.docWrite, keys: Self.keys, node: "n1", ttlMs: 30_000, ownSubscribers: 1, write)
        #expect(command.arguments == Self.expected(write, message: message))
    }

    @Test func aRefreshWithoutChangesHasNoEntries() {
        let write = PresenceWrite(upserts: [], deletes: [], full: false, refresh: true, publish: nil)
        let command = PresenceStore.command(PresenceScripts.docWrite, keys: Self.keys, node: "n1", ttlMs: 30_000, ownSubscribers: 1, write)
        #expect(command.arguments == Self.expected(write, message: []))
        #expect(command.count == 14)
    }
}
