/// One y-protocols message, as y-websocket sends one per WebSocket frame (y-protocols PROTOCOL.md,
/// sync.js, awareness.js, auth.js; yrs sync/protocol.rs). Every message starts with a varUint
/// message type:
///
/// - 0 sync, then a varUint sync type: 0 step 1 (varUint8Array state vector), 1 step 2
///   (varUint8Array update), 2 update (varUint8Array update);
/// - 1 awareness: varUint8Array holding a ``YAwarenessUpdate``;
/// - 2 auth: varUint 0 (permission denied), then varString reason;
/// - 3 query awareness: nothing more.
///
/// Sync payloads are kept as bytes (decode them with ``YStateVector`` and ``YUpdate``); the
/// awareness payload is decoded, its states checked to be JSON. Bytes after the message are refused.
public enum YProtocolMessage: Equatable, Sendable {
    case syncStep1(stateVector: [UInt8])
    case syncStep2(update: [UInt8])
    case update([UInt8])
    case awareness(YAwarenessUpdate)
    case permissionDenied(reason: String)
    case queryAwareness

    // Message types (y-protocols and yrs name them messageSync, messageAwareness, messageAuth,
    // messageQueryAwareness) and sync types (messageYjsSyncStep1, …Step2, …Update).
    public static let messageSync: UInt64 = 0
    public static let messageAwareness: UInt64 = 1
    public static let messageAuth: UInt64 = 2
    public static let messageQueryAwareness: UInt64 = 3
    public static let syncStep1Type: UInt64 = 0
    public static let syncStep2Type: UInt64 = 1
    public static let syncUpdateType: UInt64 = 2
    public static let authPermissionDenied: UInt64 = 0

    public init(decoding bytes: [UInt8], limits: YDecodingLimits = YDecodingLimits()) throws(YDecodingError) {
        var decoder = Lib0Decoder(bytes)
        let typeOffset = decoder.position
        let type = try decoder.readVarUInt()
        switch type {
        case Self.messageSync:
            let syncOffset = decoder.position
            let syncType = try decoder.readVarUInt()
            switch syncType {
            case Self.syncStep1Type: self = .syncStep1(stateVector: try decoder.readVarBytes())
            case Self.syncStep2Type: self = .syncStep2(update: try decoder.readVarBytes())
            case Self.syncUpdateType: self = .update(try decoder.readVarBytes())
            default: throw YDecodingError(.unknownMessageType(syncType), at: syncOffset)
            }
        case Self.messageAwareness:
            let payload = try decoder.readVarBytes()
            do {
                self = .awareness(try YAwarenessUpdate(decoding: payload, limits: limits))
            } catch {
                // Report the position in the message, not in the payload.
                throw YDecodingError(error.reason, at: decoder.position - payload.count + error.offset)
            }
        case Self.messageAuth:
            let authOffset = decoder.position
            let authType = try decoder.readVarUInt()
            guard authType == Self.authPermissionDenied else {
                throw YDecodingError(.unknownMessageType(authType), at: authOffset)
            }
            self = .permissionDenied(reason: try decoder.readVarString())
        case Self.messageQueryAwareness:
            self = .queryAwareness
        default:
            throw YDecodingError(.unknownMessageType(type), at: typeOffset)
        }
        try decoder.expectEnd()
    }

    public func encoded() -> [UInt8] {
        var encoder = Lib0Encoder()
        switch self {
        case .syncStep1(let stateVector):
            encoder.writeVarUInt(Self.messageSync)
            encoder.writeVarUInt(Self.syncStep1Type)
            encoder.writeVarBytes(stateVector)
        case .syncStep2(let update):
            encoder.writeVarUInt(Self.messageSync)
            encoder.writeVarUInt(Self.syncStep2Type)
            encoder.writeVarBytes(update)
        case .update(let update):
            encoder.writeVarUInt(Self.messageSync)
            encoder.writeVarUInt(Self.syncUpdateType)
            encoder.writeVarBytes(update)
        case .awareness(let update):
            encoder.writeVarUInt(Self.messageAwareness)
            encoder.writeVarBytes(update.encoded())
        case .permissionDenied(let reason):
            encoder.writeVarUInt(Self.messageAuth)
            encoder.writeVarUInt(Self.authPermissionDenied)
            encoder.writeVarString(reason)
        case .queryAwareness:
            encoder.writeVarUInt(Self.messageQueryAwareness)
        }
        return encoder.bytes
    }
}
