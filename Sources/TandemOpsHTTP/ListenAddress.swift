#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A parsed listen address, ready to hand to `MHD_OPTION_SOCK_ADDR`.
///
/// Only literals are accepted (plus `localhost` → 127.0.0.1): an ops listener
/// must bind exactly where the operator said, not wherever DNS points today.
struct ListenAddress {
    enum Family { case ipv4, ipv6 }

    let family: Family
    private var storage = sockaddr_storage()

    /// `true` for `::`: the one IPv6 address where dual-stack makes sense.
    let isIPv6Unspecified: Bool

    init?(host: String, port: Int) {
        guard (0...65535).contains(port) else { return nil }
        var literal = host
        if literal == "localhost" { literal = "127.0.0.1" }
        if literal.hasPrefix("["), literal.hasSuffix("]") {
            literal = String(literal.dropFirst().dropLast())
        }

        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET, literal, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(port).bigEndian)
            family = .ipv4
            isIPv6Unspecified = false
            withUnsafeMutableBytes(of: &storage) { dst in
                withUnsafeBytes(of: v4) { dst.copyMemory(from: $0) }
            }
        } else if inet_pton(AF_INET6, literal, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(port).bigEndian)
            family = .ipv6
            isIPv6Unspecified = withUnsafeBytes(of: v6.sin6_addr) { $0.allSatisfy { $0 == 0 } }
            withUnsafeMutableBytes(of: &storage) { dst in
                withUnsafeBytes(of: v6) { dst.copyMemory(from: $0) }
            }
        } else {
            return nil
        }
    }

    /// Runs `body` with a `sockaddr *` valid only for the duration of the call
    /// (libmicrohttpd binds inside `MHD_start_daemon` and keeps no pointer).
    func withSockAddrPointer<R>(_ body: (UnsafeMutableRawPointer) throws -> R) rethrows -> R {
        var copy = storage
        return try withUnsafeMutableBytes(of: &copy) { try body($0.baseAddress!) }
    }
}
