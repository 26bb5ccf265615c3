import TandemRedis
import Testing

@Suite("RedisEndpoint URL parsing")
struct RedisEndpointTests {
    @Test func plainHostGetsDefaults() throws {
        let endpoint = try RedisEndpoint(url: "redis://cache.internal")
        #expect(endpoint.address == .tcp(host: "cache.internal", port: 6379))
        #expect(endpoint.database == 0)
        #expect(endpoint.password == nil)
        #expect(endpoint.username == nil)
    }

    @Test func portAndDatabase() throws {
        let endpoint = try RedisEndpoint(url: "redis://127.0.0.1:6380/7")
        #expect(endpoint.address == .tcp(host: "127.0.0.1", port: 6380))
        #expect(endpoint.database == 7)
        #expect(try RedisEndpoint(url: "redis://h:1/").database == 0)
    }

    @Test func passwordOnlyAndUserWithPassword() throws {
        let passwordOnly = try RedisEndpoint(url: "redis://:s3cret@h:6379/2")
        #expect(passwordOnly.username == nil)
        #expect(passwordOnly.password == "s3cret")
        #expect(passwordOnly.database == 2)

        let withUser = try RedisEndpoint(url: "redis://tandem:p%40ss%3Aword@h")
        #expect(withUser.username == "tandem")
        #expect(withUser.password == "p@ss:word")
        #expect(withUser.address == .tcp(host: "h", port: 6379))
    }

    @Test func ipv6Host() throws {
        let endpoint = try RedisEndpoint(url: "redis://[::1]:7000/1")
        #expect(endpoint.address == .tcp(host: "::1", port: 7000))
        #expect(endpoint.description == "redis://[::1]:7000/1")
    }

    @Test func unixSocket() throws {
        let plain = try RedisEndpoint(url: "unix:///var/run/redis/redis.sock")
        #expect(plain.address == .unix(path: "/var/run/redis/redis.sock"))
        #expect(plain.database == 0)
        let withDatabase = try RedisEndpoint(url: "unix:///tmp/r.sock?db=4")
        #expect(withDatabase.address == .unix(path: "/tmp/r.sock"))
        #expect(withDatabase.database == 4)
        #expect(withDatabase.description == "unix:///tmp/r.sock?db=4")
    }

    @Test func descriptionRedactsPassword() throws {
        let endpoint = try RedisEndpoint(url: "redis://tandem:hunter2@h:6379/3")
        #expect(endpoint.description == "redis://tandem:***@h:6379/3")
        #expect(!endpoint.description.contains("hunter2"))
        #expect(!"\(try RedisEndpoint(url: "redis://:hunter2@h"))".contains("hunter2"))
        var unix = try RedisEndpoint(url: "unix:///tmp/r.sock")
        unix.password = "hunter2"
        #expect(!unix.description.contains("hunter2"))
    }

    @Test(arguments: [
        ("http://h", RedisEndpointError.unsupportedScheme("http")),
        ("rediss://h", .unsupportedScheme("rediss")),
        ("h:6379", .unsupportedScheme("h")),
        ("redis://", .missingHost),
        ("redis://:6379", .missingHost),
        ("redis://h:0", .invalidPort("0")),
        ("redis://h:65536", .invalidPort("65536")),
        ("redis://h:abc", .invalidPort("abc")),
        ("redis://h:", .invalidPort("")),
        ("redis://h/x", .invalidDatabase("x")),
        ("redis://h/-1", .invalidDatabase("-1")),
        ("redis://password@h", .invalidUserInfo),
        ("redis://:bad%zz@h", .invalidUserInfo),
        ("redis://[::1", .invalidHost("[::1")),
        ("redis://h?db=1", .unexpectedQuery("h?db=1")),
        ("unix://relative/path", .invalidUnixPath("relative/path")),
        ("unix://", .invalidUnixPath("")),
        ("unix:///tmp/r.sock?database=1", .unexpectedQuery("database=1")),
        ("unix:///tmp/r.sock?db=x", .invalidDatabase("x")),
    ])
    func rejectsBadURLs(url: String, expected: RedisEndpointError) {
        #expect(throws: expected) { try RedisEndpoint(url: url) }
    }
}
