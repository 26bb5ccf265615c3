/// What a cluster node's error reply means for the command that got it.
enum ClusterReplyError: Equatable {
    /// `MOVED slot host:port`: the slot lives elsewhere now, permanently; update the map and resend.
    case moved(slot: Int, to: ClusterNodeAddress)
    /// `ASK slot host:port`: the slot is being migrated and this key is already on the target; send
    /// `ASKING` and the command to the target, this once.
    case ask(slot: Int, to: ClusterNodeAddress)
    /// `TRYAGAIN`: a multi-key command whose keys are split by an ongoing migration. Not run; retry later.
    case tryAgain
    /// `CLUSTERDOWN`: the cluster cannot serve the slot right now (a primary failed and no replica has
    /// taken over yet). Not run; retry later, with a fresh map.
    case clusterDown
    /// `LOADING`: the node is loading its data set (a restart or a promoted replica). Not run.
    case loading
    /// `READONLY` or `MASTERDOWN`: the node is (now) a replica. Not run; refresh the map and retry.
    case notPrimary
    /// Any other error reply: it belongs to the caller.
    case other

    /// Classifies an error reply. `replyingHost` replaces an empty host in a redirect (Redis sends
    /// `MOVED 42 :6380` when the target does not know its own address).
    init(message: String, replyingHost: String) {
        let words = message.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: true)
        switch words.first {
        case "MOVED", "ASK":
            guard words.count >= 3, let slot = Int(words[1]), (0..<ClusterSlot.count).contains(slot),
                let address = ClusterNodeAddress(parsing: words[2], defaultHost: replyingHost)
            else {
                self = .other
                return
            }
            self = words[0] == "MOVED" ? .moved(slot: slot, to: address) : .ask(slot: slot, to: address)
        case "TRYAGAIN": self = .tryAgain
        case "CLUSTERDOWN": self = .clusterDown
        case "LOADING": self = .loading
        case "READONLY", "MASTERDOWN": self = .notPrimary
        default: self = .other
        }
    }
}
