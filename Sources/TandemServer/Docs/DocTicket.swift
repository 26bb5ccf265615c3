import NIOCore

/// A joined member's way straight to its session in its doc (issue 14): the shard hands one to a
/// connection with its `joined` and the connection sends it along with its presence updates, so an update
/// reaches the doc and the session's slot in `PresenceDoc` without hashing the doc id (`docs[doc]`), the
/// session id (`owners[sid]`) or the session id again (`PresenceDoc`'s handles): about 1,400 instructions
/// per update, where a whole update cost ~12,800 on its way in.
///
/// Valid while the membership it was issued for lasts: `DocState` invalidates it whenever the member is
/// removed or replaced (leave, lost socket, resume on another connection, takeover by another node, a
/// re-join that makes a new membership, shutdown). A doc is dropped only once it has no members, so an
/// invalid ticket is also how a dropped doc shows. The handle is checked against the session id at use
/// (`PresenceDoc.offerUpdate(handle:sid:…)`), and an update with no valid ticket takes the lookups, so a
/// ticket never decides anything the lookups would decide differently; it only skips them.
///
/// Held by the connection on its own loop but read and changed only on the shard's loop: its state is in a
/// `NIOLoopBoundBox`, which checks that at every access.
final class DocTicket: Sendable {
    /// The doc while the membership lasts; nil once it ended (which also lets the doc go).
    private let state: NIOLoopBoundBox<DocState?>
    /// The session's handle in the doc's `PresenceDoc` when the ticket was issued.
    let handle: Int

    /// Issued on the shard's loop (`eventLoop`) by the doc the member joined.
    init(docState: DocState, handle: Int, eventLoop: EventLoop) {
        self.state = NIOLoopBoundBox(docState, eventLoop: eventLoop)
        self.handle = handle
    }

    /// The member's doc, or nil if the membership ended; on the shard's loop only.
    var docState: DocState? { state.value }

    /// The membership ended; on the shard's loop only.
    func invalidate() { state.value = nil }
}
