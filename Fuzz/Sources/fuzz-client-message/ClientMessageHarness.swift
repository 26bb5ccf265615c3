import FuzzSupport
@testable import TandemCore

// ClientMessage.decode with the default ProtocolLimits — exactly what a client's text frame meets —
// followed by what the server does next with a push (size check, Ops parsing, a decision against a
// small doc), so mutated ops reach the sync code too.
//
// Invariants:
// - nothing traps;
// - a decoded message is valid by the protocol's rules (doc id, state object within maxStateBytes,
//   push id, positive sync limit);
// - Ops round-trip: Ops(json: ops.json) == ops;
// - the fast paths (presence, issue 14; push, issue 8) decode exactly what the parser decodes whenever
//   they take a message (they leave everything else to it);
// - every refusal has a protocol error code and encodes to a valid JSON error reply whose message is
//   bounded (an error reply must not echo an unbounded part of the client's input).

private let limits = ProtocolLimits()
private let syncLimits = SyncLimits()
/// A doc with a record of each shape an op can meet (object, nested object, string, array, number).
private let replica: DocReplica = {
    var r = DocReplica()
    let record = try! JSONParser.parse(#"{"title":"héllo 😀","tags":["a"],"n":1,"meta":{"x":{"y":"z"}},"nil":null}"#)
    r.apply(clock: 1, ops: Ops(["r1": .put(record), "n1": .put(record), "a": .put(record)]))
    r.apply(clock: 2, ops: Ops(["gone": .put(.object([:]))]))
    r.apply(clock: 3, ops: Ops(["gone": .remove]))
    return r
}()

/// Longest error message (without doc and push id, which are bounded elsewhere) we accept.
private let maxErrorMessageBytes = 512

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzClientMessage(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let frame = UnsafeBufferPointer(start: data, count: data == nil ? 0 : size)
    checkFastPaths(frame)
    let message: ClientMessage
    do {
        message = try ClientMessage.decode(frame, limits: limits)
    } catch {
        checkRefusal(error)
        return 0
    }
    if let doc = message.doc { require(DocID.isValid(doc), "decoded an invalid doc id \(doc)") }
    switch message {
    case .join(_, let state?, _, _, _), .presence(_, let state):
        require(state.value.isObject, "state is not an object")
        require(state.bytes.count <= limits.maxStateBytes, "state over maxStateBytes")
        // Entries splice these bytes as they are (issue 14): they must be the canonical serialization.
        require(state.value.serialized == state.bytes, "state bytes are not canonical")
    case .push(let doc, let id, let base, let rawOps):
        require(ClientMessage.isValidPushID(id), "invalid push id accepted")
        // The ops are only delimited by the decode; the shard parses them once a push is admitted.
        let opsJSON: JSONValue
        do {
            opsJSON = try rawOps.parse(maxDepth: limits.maxJSONDepth)
        } catch {
            return 0
        }
        // Delimited right: the whole message parses exactly when the envelope and the ops both do.
        require((try? JSONParser.parse(frame, maxDepth: limits.maxJSONDepth)) != nil, "ops parsed but the message is not JSON")
        require(opsJSON.isObject, "ops is not an object")
        guard opsJSON.serialized.count <= syncLimits.maxPushBytes else { return 0 }
        let ops: Ops
        do {
            ops = try Ops(json: opsJSON)
        } catch {
            checkRefusal(ProtocolError(error.code, error.message, doc: doc, pushID: id))
            return 0
        }
        require((try? Ops(json: ops.json)) == ops, "Ops does not round-trip through its JSON")
        do {
            let decision = try replica.decide(ops: ops, base: base, limits: syncLimits)
            let reply = ServerMessage.result(
                doc: doc, id: id, action: decision.action, clock: replica.head + 1, applied: decision.applied.json,
                reason: decision.reason)
            require((try? JSONParser.parse(reply)) != nil, "result reply is not valid JSON")
        } catch {
            checkRefusal(error)
        }
    case .sync(_, _, let limit):
        if let limit { require(limit > 0, "sync limit \(limit) accepted") }
    case .history(_, _, let limit):
        if let limit { require(limit > 0 && limit <= ClientMessage.maxHistoryLimit, "history limit \(limit) accepted") }
    case .at(_, let clock, let time):
        require((clock == nil) != (time == nil), "at with clock \(String(describing: clock)) and time \(String(describing: time))")
    case .join, .leave, .ping, .ack, .restore, .diverged:
        break
    }
    return 0
}

private func checkRefusal(_ error: ProtocolError) {
    require([.badMessage, .unknownType, .tooLarge].contains(error.code), "unexpected code \(error.code)")
    require(
        error.message.utf8.count <= maxErrorMessageBytes,
        "error message of \(error.message.utf8.count) bytes echoes the input: \(error.message.prefix(120))…")
    if let doc = error.doc { require(DocID.isValid(doc), "error names an invalid doc id") }
    let reply = ServerMessage.error(error)
    require((try? JSONParser.parse(reply)) != nil, "error reply is not valid JSON: \(String(decoding: reply.prefix(200), as: UTF8.self))")
}

/// A message a fast path takes must be the one the parser gives (same doc, id, base, state bytes, ops
/// bytes): the fast paths skip the parser, so a difference would be a message the server reads otherwise
/// than its protocol says.
private func checkFastPaths(_ frame: UnsafeBufferPointer<UInt8>) {
    for (name, fast) in [
        ("presence", PresenceFastPath.decode(frame, limits: limits)), ("push", PushFastPath.decode(frame, limits: limits)),
    ] {
        guard let fast else { continue }
        let parsed = try? ClientMessage.decodeParsed(frame, limits: limits)
        require(parsed == fast, "the \(name) fast path decoded \(fast), the parser \(String(describing: parsed))")
    }
    // The early refusal's scan (`PushBackoff.refusal(forMessage:)`) answers from these slices without a
    // decode: they must be the doc and number id of the push the fast path (so the parser) reads.
    if let (doc, id) = PushFastPath.numberIDPush(frame, limits: limits) {
        let fast = PushFastPath.decode(frame, limits: limits)
        guard case .push(let fastDoc, let fastID, _, _)? = fast else {
            return require(false, "numberIDPush took a message the push fast path does not: \(String(describing: fast))")
        }
        require(String(decoding: doc, as: UTF8.self) == fastDoc, "numberIDPush's doc differs from the fast path's \(fastDoc)")
        let scannedID = try? JSONParser.parse(id)
        require(scannedID == fastID, "numberIDPush's id \(String(describing: scannedID)) is not the fast path's \(fastID)")
    }
}
