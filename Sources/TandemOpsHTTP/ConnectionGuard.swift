import CMicroHTTPD
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The shell around `ConnectionAdmission`: fed by libmicrohttpd's connection and request notifications,
/// it closes the connections the state machine refuses or evicts.
///
/// Closing a connection that another polling thread owns: `shutdown(fd, SHUT_RDWR)` — not `close()` —
/// so the owning thread sees end-of-file on its next poll and closes the connection the normal way
/// (libmicrohttpd itself uses `shutdown` from other threads). The fd cannot be closed and reused under
/// us: libmicrohttpd calls the CLOSED notification (`closed(_:)`, which takes this lock and forgets the
/// fd) before it closes the socket (daemon.c, `MHD_cleanup_connections`, 0.9.75), and `shutdown` runs
/// only under this lock on fds still registered.
///
/// Threads: every method is called on the polling thread that owns the connection (or the thread in
/// `MHD_stop_daemon`); the lock serialises them across threads. The connection count is reported under
/// the lock (so a gauge sees the counts in order), other events after it.
final class ConnectionGuard: Sendable {
    private struct State {
        var admission: ConnectionAdmission
        var sockets: [ConnectionAdmission.ID: Int32] = [:]
    }

    private let state: NIOLockedValueBox<State>
    private let observe: @Sendable (OpsHTTPEvent) -> Void

    init(limits: ConnectionAdmission.Limits, observe: @escaping @Sendable (OpsHTTPEvent) -> Void) {
        state = NIOLockedValueBox(State(admission: ConnectionAdmission(limits: limits)))
        self.observe = observe
    }

    static func id(of connection: OpaquePointer) -> ConnectionAdmission.ID {
        UInt(bitPattern: Int(bitPattern: connection))
    }

    /// `MHD_CONNECTION_NOTIFY_STARTED`.
    func started(_ connection: OpaquePointer) {
        let id = Self.id(of: connection)
        let fd = Int32(tandem_mhd_connection_fd(connection))
        let address = ClientAddressKey(tandem_mhd_connection_address(connection))
        let now = monotonicMilliseconds()
        let decision = state.withLockedValue { state in
            let decision = state.admission.opened(id, address: address, nowMs: now)
            state.sockets[id] = fd
            switch decision {
            case .admit:
                break
            case .admitEvicting(let victim):
                if let victimFD = state.sockets[victim], victimFD >= 0 { shutdown(victimFD, Int32(SHUT_RDWR)) }
            case .refuse:
                if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) }
            }
            observe(.openConnections(state.admission.openCount))
            return decision
        }
        switch decision {
        case .admit: break
        case .admitEvicting: observe(.connectionEvicted)
        case .refuse(let reason): observe(.connectionRefused(reason))
        }
    }

    /// `MHD_CONNECTION_NOTIFY_CLOSED`: before libmicrohttpd closes the socket.
    func closed(_ connection: OpaquePointer) {
        let id = Self.id(of: connection)
        state.withLockedValue { state in
            state.admission.closed(id)
            state.sockets[id] = nil
            observe(.openConnections(state.admission.openCount))
        }
    }

    /// The request's headers are complete (first access-handler call).
    func requestStarted(_ connection: OpaquePointer) {
        let now = monotonicMilliseconds()
        state.withLockedValue { $0.admission.requestStarted(Self.id(of: connection), nowMs: now) }
    }

    /// The request ended (completed callback).
    func requestFinished(_ connection: OpaquePointer) {
        let now = monotonicMilliseconds()
        state.withLockedValue { $0.admission.requestFinished(Self.id(of: connection), nowMs: now) }
    }

    /// Connections open (admitted, not being closed), tracked (all sockets) and idle (open, no request in
    /// progress), for tests.
    var counts: (open: Int, tracked: Int, idle: Int) {
        state.withLockedValue { ($0.admission.openCount, $0.admission.trackedCount, $0.admission.idleCount) }
    }
}

extension ClientAddressKey {
    /// The key of a client address as libmicrohttpd reports it.
    init(_ address: UnsafePointer<sockaddr>?) {
        guard let address else {
            self = .other
            return
        }
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            let bytes = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin_addr) { Array($0) }
            }
            self.init(ipv4: bytes[0], bytes[1], bytes[2], bytes[3])
        case AF_INET6:
            let bytes = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
            }
            self.init(ipv6: bytes)
        default:
            self = .other
        }
    }
}

/// Milliseconds of a clock that never goes backwards (`CLOCK_MONOTONIC`).
func monotonicMilliseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
}
