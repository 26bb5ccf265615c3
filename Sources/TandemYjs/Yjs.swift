/// Yjs's update functions on v1 updates (yjs src/utils/updates.js), with Yjs's semantics:
/// ``stateVector(fromUpdate:limits:)``, ``mergeUpdates(_:limits:)``, ``diffUpdate(_:stateVector:limits:)``.
/// Each has a form on bytes (decodes, validates, encodes) and one on decoded values, for callers
/// that keep updates decoded.
public enum Yjs {
    /// Yjs `encodeStateVectorFromUpdate` (see ``YStateVector/init(fromUpdate:)``).
    public static func stateVector(fromUpdate update: [UInt8], limits: YDecodingLimits = YDecodingLimits()) throws(YDecodingError) -> [UInt8] {
        YStateVector(fromUpdate: try YUpdate(decoding: update, limits: limits)).encoded()
    }
}
