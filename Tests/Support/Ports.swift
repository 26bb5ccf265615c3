#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A TCP port on 127.0.0.1 that was free a moment ago: binds port 0, reads the port the kernel
/// chose, closes the socket.
///
/// Another process can take the port before it is used, so prefer binding port 0 directly where
/// the server under test can report its port. Good for a child process that must be told a port.
public func freeTCPPort() -> Int {
    #if canImport(Darwin)
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #else
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #endif
    precondition(fd >= 0, "freeTCPPort: socket() failed, errno \(errno)")
    defer { close(fd) }

    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    precondition(bound == 0, "freeTCPPort: bind() failed, errno \(errno)")

    var chosen = sockaddr_in()
    var chosenLength = length
    let named = withUnsafeMutablePointer(to: &chosen) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &chosenLength) }
    }
    precondition(named == 0, "freeTCPPort: getsockname() failed, errno \(errno)")
    return Int(UInt16(bigEndian: chosen.sin_port))
}
