/// The shared type a ContentType item creates (Yjs ContentType.js `typeRefs`, update v1
/// `writeTypeRef` = varUint, then the type's own fields).
public enum YTypeRef: Equatable, Sendable {
    case array  // 0
    case map  // 1
    case text  // 2
    case xmlElement(nodeName: String)  // 3, then varString nodeName
    case xmlFragment  // 4
    case xmlHook(hookName: String)  // 5, then varString hookName
    case xmlText  // 6

    /// Refs 7 and up are refused: Yjs has no reader for them (yrs's weak links, 7, and its
    /// sub-document and undefined refs, 9 and 15, would make a Yjs client throw).
    static func decode(from decoder: inout Lib0Decoder) throws(YDecodingError) -> YTypeRef {
        let offset = decoder.position
        let ref = try decoder.readVarUInt()
        switch ref {
        case 0: return .array
        case 1: return .map
        case 2: return .text
        case 3: return .xmlElement(nodeName: try decoder.readVarString())
        case 4: return .xmlFragment
        case 5: return .xmlHook(hookName: try decoder.readVarString())
        case 6: return .xmlText
        default: throw YDecodingError(.unknownTypeRef(ref), at: offset)
        }
    }

    func encode(to encoder: inout Lib0Encoder) {
        switch self {
        case .array: encoder.writeVarUInt(0 as UInt64)
        case .map: encoder.writeVarUInt(1 as UInt64)
        case .text: encoder.writeVarUInt(2 as UInt64)
        case .xmlElement(let nodeName):
            encoder.writeVarUInt(3 as UInt64)
            encoder.writeVarString(nodeName)
        case .xmlFragment: encoder.writeVarUInt(4 as UInt64)
        case .xmlHook(let hookName):
            encoder.writeVarUInt(5 as UInt64)
            encoder.writeVarString(hookName)
        case .xmlText: encoder.writeVarUInt(6 as UInt64)
        }
    }
}
