import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Runs work at the start of its event loop's NEXT tick, beside that tick's socket reads: a pipe whose
/// read end is a channel on the loop, rung (one byte written) from the loop itself.
///
/// Why not `eventLoop.execute`. A NIO loop tick reads every ready socket, then runs tasks until none is
/// left — including tasks queued by the tasks it runs and by other threads meanwhile. A commit round sent
/// from a Redis reply (a task) with `execute` went in the same task phase; Redis answered it within
/// ~100 µs, as another task, whose docs sent the next round, and so on: on a busy node the loop stayed in
/// its task phase for 200–500 ms at a time (sync-20k, stop 31: 40 % of the loops' busy time in ticks over
/// 200 ms, three quarters of it in tasks), not reading a socket meanwhile — pushes, pings and every other
/// message waited in the kernel's buffers, which is where the push → result tail at 20k came from.
/// A rung doorbell is an I/O event: what it runs waits for the loop to go back to `epoll_wait`, that is
/// for the task phase to end, and then goes with the reads of the sockets that became ready meanwhile.
///
/// Not thread-safe: made, rung and closed on its loop only (its owner is confined there).
final class LoopDoorbell {
    private let writeEnd: CInt
    private var channel: (any Channel)?
    private var rung = false
    private var closed = false
    private let onRing: () -> Void

    private init(writeEnd: CInt, onRing: @escaping () -> Void) {
        self.writeEnd = writeEnd
        self.onRing = onRing
    }

    /// A doorbell on `eventLoop` calling `onRing` there once per ring (rings before it runs are one).
    /// Call on the loop. Fails if the process is out of file descriptors (two per loop), or on a loop that
    /// is not a selector's (`EmbeddedEventLoop` in tests: there is no `epoll_wait` to ring).
    static func make(on eventLoop: any EventLoop, onRing: @escaping () -> Void) -> EventLoopFuture<LoopDoorbell> {
        eventLoop.assertInEventLoop()
        guard let bootstrap = NIOPipeBootstrap(validatingGroup: eventLoop) else {
            return eventLoop.makeFailedFuture(NotASelectorLoop())
        }
        var ends: [CInt] = [-1, -1]
        guard pipe(&ends) == 0 else {
            return eventLoop.makeFailedFuture(IOError(errnoCode: errno, reason: "pipe (the commit rounds' doorbell)"))
        }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        let (readEnd, writeEnd) = (ends[0], ends[1])
        let doorbell = LoopDoorbell(writeEnd: writeEnd, onRing: onRing)
        let bound = NIOLoopBound(doorbell, eventLoop: eventLoop)
        return bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DoorbellHandler(doorbell: bound.value))
                }
            }
            .takingOwnershipOfDescriptor(input: readEnd)
            .flatMapError { error in
                // The read end is still ours when the channel was not made.
                Glibc.close(readEnd)
                Glibc.close(writeEnd)
                return eventLoop.makeFailedFuture(error)
            }
            .map { channel in
                let doorbell = bound.value
                doorbell.channel = channel
                return doorbell
            }
    }

    /// Asks for `onRing` at the loop's next tick (once, however often it is rung before that).
    func ring() {
        guard !rung, !closed else { return }
        rung = true
        var byte: UInt8 = 1
        // At most one byte is ever unread (`rung`), so the pipe cannot be full: the write does not fail short
        // of a closed pipe, and then there is no loop to ring either.
        _ = write(writeEnd, &byte, 1)
    }

    /// Closes both ends (the read end's channel, the write end). Call on the loop.
    func close() {
        guard !closed else { return }
        closed = true
        channel?.close(promise: nil)
        Glibc.close(writeEnd)
    }

    fileprivate func answered() {
        guard rung else { return }
        rung = false
        onRing()
    }

    /// The loop has no selector to wake (an `EmbeddedEventLoop`): its owner does without the doorbell.
    struct NotASelectorLoop: Error, CustomStringConvertible {
        var description: String { "not a selector's event loop" }
    }

    private final class DoorbellHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        private let doorbell: LoopDoorbell
        init(doorbell: LoopDoorbell) { self.doorbell = doorbell }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            // The byte itself says nothing: one read drains it (the buffer is far larger than one byte).
            doorbell.answered()
        }
    }
}
