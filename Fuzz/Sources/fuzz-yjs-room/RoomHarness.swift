import FuzzSupport
@testable import TandemCore
import TandemYjs

// The /yjs endpoint's path for one room, from the fuzzer's bytes: frames from three members decoded as
// YjsConnection decodes them (y-protocols message, then the state vector, update or awareness inside),
// fed to YjsRoomMachine; the room's Redis simulated in order (one connection: requests answered in the
// order sent; the channel's publishes delivered, or lost, separately); members joining and leaving;
// awareness ticks and sweeps with time passed in; another node's awareness. Frames are raw bytes or valid
// typing updates (random bytes rarely decode as one), so rooms grow, lose publishes, reload, fail and are
// dropped and made again; rooms compact every 4 log entries (the server: 500), so compaction races appends,
// reloads and other rooms' compactions. Half the inputs (bit 4 of the first byte) run the rooms with relay
// coalescing on, as the server does (`--yjs-relay-ms`): a room asks for a relay (`scheduleRelay`) and the
// harness flushes it when the window ends (an op byte with bit 5 set, time passing, settling).
//
// Invariants, checked after every action and at the end:
// - nothing traps; every message sent to one member re-decodes to itself; every relayed update decodes;
// - relay order: updates relayed from the channel are the log's entries in seq order, none twice; with
//   coalescing, each relay is the merge (`Yjs.mergeUpdates`) of the log's next consecutive entries — all that
//   the room applied since its last relay, or fewer where a batch reached its bounds;
// - a room asks for compaction only of what it has applied, with a snapshot holding exactly the log up to there;
// - no connection owns more than `YjsAwareness.maxClientsPerConnection` awareness clientIDs;
// - convergence: once every request is answered and every publish delivered (lost ones found by the
//   periodic check), the room's document has Redis's state vector, and a new member's step 1 gets a step 2
//   with exactly that state vector.

#if canImport(Glibc)
import Glibc
#endif

private let tracing = getenv("FUZZ_TRACE") != nil
private func trace(_ line: @autoclosure () -> String) { if tracing { fputs(line() + "\n", stderr) } }

private final class Member {}

/// The room's Redis: the log (every entry ever appended, by seq), the snapshot's base, the size limit.
private struct Redis {
    var entries: [[UInt8]] = []
    var base: Int64 = 0
    var snapshot: [UInt8]?
    var bytes = 0
    static let maxBytes = 16_384

    var seq: Int64 { Int64(entries.count) }

    func load() -> YjsLoadedRoom {
        YjsLoadedRoom(seq: seq, base: base, snapshot: snapshot, entries: Array(entries[Int(base)...]))
    }

    /// Everything Redis holds, as one update.
    func whole() -> YUpdate {
        var parts: [YUpdate] = []
        if let snapshot { parts.append(try! YUpdate(decoding: snapshot)) }
        for entry in entries[Int(base)...] { parts.append(try! YUpdate(decoding: entry)) }
        return Yjs.mergeUpdates(parts)
    }
}

private enum Request {
    case load(generation: Int)
    case append(generation: Int, bytes: [UInt8], token: YjsRoomMachine.AppendToken)
    case reload(generation: Int)
    case compact(generation: Int, base: Int64, upto: Int64, snapshot: [UInt8])
    case head(generation: Int, seqAtRead: Int64)
}

private struct Simulation {
    /// Rooms merge the updates applied between two relays (the server's default) instead of relaying each.
    let coalesce: Bool
    let objects = [Member(), Member(), Member()]
    var ids: [ObjectIdentifier] { objects.map(ObjectIdentifier.init) }
    /// Every room this node made (a dropped room's late replies still go to it, as on the shard).
    var rooms: [YjsRoomMachine] = []
    var joined: Set<ObjectIdentifier> = []
    var redis = Redis()
    var requests: [Request] = []
    var channel: [YjsPublishedUpdate] = []
    /// Per room: the seq of the last update its members got (the loaded seq to start with).
    var relayedSeq: [Int64] = []
    /// Per room: Redis's seq when it last answered the room's reload.
    var reloadSeq: [Int64] = []
    /// Per room (coalescing): a relay is scheduled and not flushed yet.
    var relayScheduled: [Bool] = []
    /// Per room (coalescing): a reload past a compaction put what the new snapshot adds into the pending
    /// batch, so the next relay is not only log entries (and where it ends in the log is the room's seq).
    var relayIncludesReread: [Bool] = []
    var nowMs: UInt64 = 0
    /// Typing state per (member, client): the next clock.
    var clocks: [UInt64: Int] = [:]

    var current: Int? { rooms.indices.last.flatMap { rooms[$0].dropped ? nil : $0 } }

    mutating func room() -> Int {
        if let current { return current }
        rooms.append(YjsRoomMachine(awarenessRate: 20, awarenessBurst: 5, compactionThreshold: 4, coalesceRelays: coalesce))
        relayedSeq.append(0)
        reloadSeq.append(0)
        relayScheduled.append(false)
        relayIncludesReread.append(false)
        joined.removeAll()
        requests.append(.load(generation: rooms.count - 1))
        return rooms.count - 1
    }

    mutating func perform(_ actions: [YjsRoomAction], in generation: Int) {
        for action in actions {
            trace("  [\(generation)] \(action)")
            switch action {
            case .send(_, let message):
                require((try? YProtocolMessage(decoding: message.encoded())) == message, "a sent message does not re-decode")
            case .relay(let message, let appendedAtMs):
                guard case .update(let bytes) = message else {
                    require(false, "relayed \(message)")
                    return
                }
                require((try? YUpdate(decoding: bytes)) != nil, "a relayed update does not decode")
                let next = relayedSeq[generation]
                if coalesce {
                    checkCoalescedRelay(bytes, in: generation)
                } else if next < redis.seq, redis.entries[Int(next)] == bytes {
                    relayedSeq[generation] = next + 1  // the log's next entry, from the channel or a reload
                } else {
                    // Only a reload past a compaction relays anything else: what the new snapshot adds.
                    require(appendedAtMs == nil, "relayed from the channel out of order or not the log's entry")
                    relayedSeq[generation] = reloadSeq[generation]
                }
            case .relayAwareness(let update):
                require((try? YAwarenessUpdate(decoding: update.encoded())) == update, "awareness does not round-trip")
            case .append(let bytes, let token):
                requests.append(.append(generation: generation, bytes: bytes, token: token))
            case .reload:
                requests.append(.reload(generation: generation))
            case .compact(let base, let upto, let snapshot):
                require(upto <= rooms[generation].seq && upto > base && upto <= redis.seq, "compaction of what the room has not applied")
                // Exactly the log up to `upto` (the room may have applied more since, in the same batch).
                let log = Yjs.mergeUpdates(redis.entries[..<Int(upto)].map { try! YUpdate(decoding: $0) })
                require(
                    (try? YUpdate(decoding: snapshot)).map(YStateVector.init(fromUpdate:)) == YStateVector(fromUpdate: log),
                    "the snapshot is not the log up to \(upto)")
                requests.append(.compact(generation: generation, base: base, upto: upto, snapshot: snapshot))
            case .readHead(let seqAtRead):
                requests.append(.head(generation: generation, seqAtRead: seqAtRead))
            case .closeAll:
                if generation == rooms.count - 1 { joined.removeAll() }
            case .drop:
                require(rooms[generation].members.isEmpty, "dropped with members")
            case .writeAwareness, .sweepAwareness, .close, .count, .log:
                break
            case .scheduleRelay:
                require(coalesce, "a relay scheduled with coalescing off")
                relayScheduled[generation] = true
            }
        }
        for member in ids {
            let owned = rooms[generation].awareness.known.values.filter { $0.owner == .member(member) }.count
            require(owned <= YjsAwareness.maxClientsPerConnection, "a connection owns \(owned) clientIDs")
        }
    }

    /// With coalescing: `bytes` must be the merge of the log's entries from the next one not relayed, up to
    /// the room's seq or the batch bounds (`YjsRoomMachine.maxCoalescedUpdates` / `maxCoalescedBytes`, which
    /// flush a batch in the middle of applying several entries). After a reload past a compaction the batch
    /// also holds what the new snapshot added; then it ends at the room's seq, and only decoding is checked.
    mutating func checkCoalescedRelay(_ bytes: [UInt8], in generation: Int) {
        let next = Int(relayedSeq[generation])
        let end = Int(min(rooms[generation].seq, redis.seq))
        var parts: [YUpdate] = []
        var size = 0
        var k = next
        while k < end {
            parts.append(try! YUpdate(decoding: redis.entries[k]))
            size += redis.entries[k].count
            k += 1
            if parts.count >= YjsRoomMachine.maxCoalescedUpdates || size >= YjsRoomMachine.maxCoalescedBytes { break }
        }
        let expected = parts.count == 1 ? redis.entries[next] : Yjs.mergeUpdates(parts).encoded()
        if !parts.isEmpty, expected == bytes {
            relayedSeq[generation] = Int64(k)
            return
        }
        require(relayIncludesReread[generation], "a coalesced relay is not the merge of the log's entries \(next + 1)...\(k)")
        relayIncludesReread[generation] = false
        relayedSeq[generation] = rooms[generation].seq
    }

    /// The coalescing window of the live room ended: it relays what it holds.
    mutating func flushRelay() {
        guard coalesce, let generation = current, relayScheduled[generation] else { return }
        relayScheduled[generation] = false
        perform(rooms[generation].flushRelay(), in: generation)
    }

    /// A frame from a member, as YjsConnection handles it.
    mutating func frame(_ bytes: [UInt8], from member: ObjectIdentifier, user: String) {
        guard let generation = current, joined.contains(member) else { return }
        guard let message = try? YProtocolMessage(decoding: bytes) else { return }  // closed: 1007
        switch message {
        case .syncStep1(let vectorBytes):
            guard let vector = try? YStateVector(decoding: vectorBytes) else { return }
            perform(rooms[generation].step1(member, stateVector: vector), in: generation)
        case .syncStep2(let updateBytes), .update(let updateBytes):
            guard let update = try? YUpdate(decoding: updateBytes) else { return }
            perform(rooms[generation].update(member, update: update, bytes: updateBytes), in: generation)
        case .awareness(let update):
            perform(rooms[generation].awareness(member, user: user, entries: update.entries, nowMs: nowMs), in: generation)
        case .queryAwareness:
            perform(rooms[generation].queryAwareness(member), in: generation)
        case .permissionDenied:
            break
        }
    }

    /// Redis answers the oldest request (`fail`: with an error, nothing written).
    mutating func answer(fail: Bool) {
        guard !requests.isEmpty else { return }
        let request = requests.removeFirst()
        let failure = YjsStorageFailure("fuzz")
        switch request {
        case .load(let generation):
            relayedSeq[generation] = redis.seq
            perform(rooms[generation].loaded(fail ? .failure(failure) : .success(redis.load())), in: generation)
        case .reload(let generation):
            if !fail { reloadSeq[generation] = redis.seq }
            if !fail, redis.base > rooms[generation].seq, redis.seq > rooms[generation].seq { relayIncludesReread[generation] = true }
            perform(rooms[generation].reloaded(fail ? .failure(failure) : .success(redis.load())), in: generation)
        case .append(let generation, let bytes, let token):
            let outcome: YjsRoomMachine.AppendOutcome
            if fail {
                outcome = .failed("fuzz")
            } else if redis.bytes + bytes.count > Redis.maxBytes {
                outcome = .roomFull
            } else {
                redis.entries.append(bytes)
                redis.bytes += bytes.count
                channel.append(YjsPublishedUpdate(seq: redis.seq, appendedAtMs: nowMs, update: bytes))
                outcome = .appended(seq: redis.seq, logLength: Int(redis.seq - redis.base))
            }
            perform(rooms[generation].appendCompleted(token: token, outcome: outcome), in: generation)
        case .compact(let generation, let base, let upto, let snapshot):
            guard !fail else {
                perform(rooms[generation].compacted(.failure(failure)), in: generation)
                return
            }
            let done = redis.base == base && upto <= redis.seq && upto > base
            if done {
                redis.snapshot = snapshot
                redis.base = upto
            }
            perform(rooms[generation].compacted(.success((compacted: done, base: redis.base))), in: generation)
        case .head(let generation, let seqAtRead):
            guard !fail else { return }  // the shard ignores a failed check
            perform(rooms[generation].headRead(redis.seq, seqAtRead: seqAtRead), in: generation)
        }
    }

    /// The channel's next publish to every room of this node subscribed (the live one), or lost.
    mutating func publish(lose: Bool) {
        guard !channel.isEmpty else { return }
        let published = channel.removeFirst()
        guard !lose, let generation = current else { return }
        perform(rooms[generation].published(published), in: generation)
    }

    /// A valid typing update (one struct after the client's own previous one, or a deletion of one of its
    /// characters), as a sync update frame.
    mutating func typing(_ input: inout FuzzInput) -> [UInt8] {
        let client = UInt64(input.int(in: 1...4))
        let clock = clocks[client, default: 0]
        var encoder = Lib0Encoder()
        if clock > 0, input.byte() < 40 {
            encoder.writeVarUInt(0)  // no structs
            encoder.writeVarUInt(1)  // a delete set of one client
            encoder.writeVarUInt(client)
            encoder.writeVarUInt(1)
            encoder.writeVarUInt(input.int(in: 0...(clock - 1)))
            encoder.writeVarUInt(1)
        } else {
            let text = input.pick(["a", "bc", "déf", "\u{1F600}"])
            encoder.writeVarUInt(1)
            encoder.writeVarUInt(1)
            encoder.writeVarUInt(client)
            encoder.writeVarUInt(clock)
            if clock == 0 {
                encoder.writeUInt8(0x04)  // ContentString; parent: a root type by name
                encoder.writeVarUInt(1)
                encoder.writeVarString("t")
            } else {
                encoder.writeUInt8(0x84)  // ContentString after an origin
                encoder.writeVarUInt(client)
                encoder.writeVarUInt(clock - 1)
            }
            encoder.writeVarString(text)
            encoder.writeVarUInt(0)
            clocks[client] = clock + text.utf16.count
        }
        return YProtocolMessage.update(encoder.bytes).encoded()
    }

    /// Answers everything, delivers every publish and checks until the room is settled (bounded).
    mutating func settle() {
        for _ in 0..<16 {
            while !requests.isEmpty || !channel.isEmpty {
                if !requests.isEmpty { answer(fail: false) }
                publish(lose: false)
            }
            flushRelay()
            guard let generation = current else { return }
            if rooms[generation].isLive, !rooms[generation].reloading, rooms[generation].seq == redis.seq { return }
            perform(rooms[generation].check(), in: generation)
        }
        require(false, "the room did not settle")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRoom(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    // Bit 4 of an op byte is unused by the ops below, so the committed seeds keep their meaning in both modes.
    var sim = Simulation(coalesce: size > 0 && data![0] & 0x10 != 0)
    let users = ["u0", "u1", "u1"]  // two connections of one user share its awareness rate
    var steps = 0
    while !input.isExhausted, steps < 400 {
        steps += 1
        let op = input.byte()
        let who = Int(op >> 6) % 3
        let member = sim.ids[who]
        if op & 0x20 != 0 { sim.flushRelay() }  // the coalescing window ended before this op
        switch op & 0x0F {
        case 0, 1:
            let generation = sim.room()
            if !sim.joined.contains(member) {
                sim.joined.insert(member)
                sim.perform(sim.rooms[generation].join(member), in: generation)
            }
        case 2:
            guard let generation = sim.current, sim.joined.remove(member) != nil else { continue }
            sim.perform(sim.rooms[generation].leave(member), in: generation)
        case 3, 4, 5:
            let frame = sim.typing(&input)
            sim.frame(frame, from: member, user: users[who])
        case 6:
            sim.frame(input.bytes(maxCount: 96), from: member, user: users[who])
        case 7:
            // Awareness of a small clientID (several per member, some another member's).
            var encoder = Lib0Encoder()
            let count = input.int(in: 1...3)
            encoder.writeVarUInt(count)
            for _ in 0..<count {
                encoder.writeVarUInt(UInt64(input.int(in: 1...12)))
                encoder.writeVarUInt(UInt64(input.int(in: 0...6)))
                encoder.writeVarString(input.pick(["null", "{}", #"{"c":1}"#, "[1,2]"]))
            }
            sim.frame(YProtocolMessage.awareness(try! YAwarenessUpdate(decoding: encoder.bytes)).encoded(), from: member, user: users[who])
        case 8, 9, 10:
            sim.answer(fail: input.byte() == 0xFF)
        case 11, 12:
            sim.publish(lose: input.byte() >= 0xF0)
        case 13:
            sim.nowMs += UInt64(input.int(in: 0...3000))
            sim.flushRelay()
            guard let generation = sim.current else { continue }
            sim.perform(sim.rooms[generation].awarenessTick(nowMs: sim.nowMs), in: generation)
            sim.perform(sim.rooms[generation].sweepAwareness(nowMs: sim.nowMs, ttlMs: 2000), in: generation)
            sim.perform(sim.rooms[generation].refreshAwareness(), in: generation)
        case 14:
            guard let generation = sim.current else { continue }
            let entry = YAwarenessUpdate.Entry(
                clientID: UInt64(input.int(in: 1...12)), clock: UInt64(input.int(in: 0...6)), stateJSON: input.pick(["null", "{}"]))
            sim.rooms[generation].remoteAwareness([entry], fromNode: input.pick(["B", "C"]), nowMs: sim.nowMs)
        default:
            guard let generation = sim.current else { continue }
            sim.perform(sim.rooms[generation].check(), in: generation)
        }
    }

    // Convergence: settle, then a room (this one, or a new one reading Redis) holds Redis's document.
    sim.settle()
    let generation = sim.room()
    let newcomer = sim.ids[2]
    if !sim.joined.contains(newcomer) {
        sim.joined.insert(newcomer)
        sim.perform(sim.rooms[generation].join(newcomer), in: generation)
    }
    sim.settle()
    guard let live = sim.current, sim.rooms[live].isLive else { return 0 }
    let expected = YStateVector(fromUpdate: sim.redis.whole())
    require(sim.rooms[live].document.stateVector() == expected, "the room's document is not Redis's")
    let step2 = sim.rooms[live].step1(newcomer, stateVector: YStateVector())
    guard case .send(_, .syncStep2(let bytes))? = step2.first, let update = try? YUpdate(decoding: bytes) else {
        require(false, "no step 2 for a newcomer: \(step2)")
        return 0
    }
    require(YStateVector(fromUpdate: update) == expected, "a newcomer's step 2 is not the whole document")
    return 0
}
