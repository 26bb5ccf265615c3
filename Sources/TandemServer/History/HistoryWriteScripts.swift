import TandemRedis

/// The fork's one write (issue 15): a new doc whose first commit puts every record of the source's state.
enum HistoryWriteScripts {
    /// KEYS: GroupCommitScript.keys(new doc). ARGV: docTTLMs (0: none), node, sid, pushIdJSON, nowMs, opsJSON,
    /// then id, value pairs. Refuses a doc that exists ({'exists', head}); else writes clock 1, the records,
    /// their versions and the log entry of commit 1 (a classic entry: `ops`, `by`, `node`, `id`, `at`),
    /// gives every key the doc's deadline, and returns {'ok', '1'}. Atomic, so two forks onto one id
    /// cannot both land.
    static let fork = RedisScript(
        GroupCommitScript.keepAlive + """
        local head = redis.call('GET', KEYS[1])
        if head then return {'exists', head} end
        local ttl, node, sid, pid, at, ops = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
        redis.call('SET', KEYS[1], '1')
        local puts, versions = {}, {}
        for i = 7, #ARGV, 2 do
          puts[#puts + 1] = ARGV[i]; puts[#puts + 1] = ARGV[i + 1]
          versions[#versions + 1] = ARGV[i]; versions[#versions + 1] = '1'
        end
        for s = 1, #puts, 2000 do
          redis.call('HSET', KEYS[2], unpack(puts, s, math.min(s + 1999, #puts)))
          redis.call('HSET', KEYS[3], unpack(versions, s, math.min(s + 1999, #versions)))
        end
        redis.call('XADD', KEYS[5], '1-0', 'ops', ops, 'by', sid, 'node', node, 'id', pid, 'at', at)
        if ttl > 0 then keepAlive(ttl, tonumber(at)) end
        return {'ok', '1'}
        """)
}
