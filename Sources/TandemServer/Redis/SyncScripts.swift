import TandemRedis

/// The Lua scripts behind document sync. One script call is one atomic step in Redis: the check that the
/// decision still holds, the clock increment, the record writes, the tombstones, the log append, the
/// compaction and the publish — so any node can accept pushes for any doc and no two commits ever get
/// the same clock.
///
/// Keys of doc D (all tagged `{D}`, one Cluster slot):
/// - `tandem:{D}:clock` — head clock (INCR).
/// - `tandem:{D}:records` — hash id → record JSON (canonical).
/// - `tandem:{D}:versions` — hash id → clock of the record's last change (live records).
/// - `tandem:{D}:tombs` — sorted set id → clock of removal (kept for --log-retention commits).
/// - `tandem:{D}:log` — stream, entry id `CLOCK-0`, fields ops/by/node/id/at, MAXLEN --log-retention.
/// - `tandem:{D}:pushes` — hash session → `CLOCK\tPUSHID` lines of its last 64 commits, newest first
///   (idempotent re-push; push ids are JSON, so they hold no raw tab or newline), and
///   `tandem:{D}:pushers` sorted set session → clock, to forget sessions idle beyond the retention.
///
/// Doc TTL (`--doc-ttl`, issue 7): all seven keys carry one and the same deadline (PEXPIREAT), so they
/// vanish together and no script ever sees a doc half expired (Redis freezes the clock a script sees).
/// Every commit moves the deadline to commit time + TTL; `load` and `head`, which nodes run while they
/// hold the doc open, move it too once half the TTL has passed, so a doc in use never expires under a
/// node's replica. TTL 0 means never: those same places drop a deadline an earlier setting left.
enum SyncScripts {
    static func keys(_ doc: String) -> [String] {
        let p = "tandem:{\(doc)}:"
        return [p + "clock", p + "records", p + "versions", p + "tombs", p + "log", p + "pushes", p + "pushers"]
    }

    /// Lua: `refreshTTL(ttl, nowMs)` gives KEYS[1…7] (keys(doc)) the deadline now + `ttl` ms (`ttl` 0:
    /// no deadline). With `nowMs` (a commit) always: 7 PEXPIREATs. Without (the read paths) only when
    /// due: one PTTL of the clock, and the refresh once half the TTL has passed since the last one (no
    /// deadline yet counts as due; a doc without a clock — no commit yet — has nothing to keep).
    static let refreshTTL = """
        local function refreshTTL(ttl, nowMs)
          local left
          if ttl == 0 or not nowMs then left = redis.call('PTTL', KEYS[1]) end
          if ttl == 0 then
            if left >= 0 then for k = 1, 7 do redis.call('PERSIST', KEYS[k]) end end
            return
          end
          if not nowMs then
            if left == -2 or left >= ttl / 2 then return end
            local t = redis.call('TIME')
            nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          end
          local deadline = string.format('%d', nowMs + ttl)
          for k = 1, 7 do redis.call('PEXPIREAT', KEYS[k], deadline) end
        end

        """

    /// KEYS: keys(doc). ARGV: node, sid, pushIDJSON, appliedOpsJSON, retention, maxDocRecords, channel,
    /// created, removed, expectationCount, expectationCount × (id, kind a|e|v, version), writeCount,
    /// writeCount × (id, p|r, record-or-empty), docTTLMs (always the last argument).
    /// Returns {'ok', clock, at} | {'conflict', head} | {'duplicate', clock} | {'too_large', count}.
    static let commit = RedisScript(
        refreshTTL + """
        local clockKey, records, versions, tombs, log, pushes, pushers =
          KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
        local node, sid, pushId, ops = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
        local retention, maxRecords, channel = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
        local created, removed = tonumber(ARGV[8]), tonumber(ARGV[9])
        local recent = redis.call('HGET', pushes, sid)
        if recent then
          for line in string.gmatch(recent, '[^\\n]+') do
            local tab = string.find(line, '\\t', 1, true)
            if tab and string.sub(line, tab + 1) == pushId then return {'duplicate', string.sub(line, 1, tab - 1)} end
          end
        end
        local i = 11
        for _ = 1, tonumber(ARGV[10]) do
          local id, kind, version = ARGV[i], ARGV[i + 1], ARGV[i + 2]
          i = i + 3
          local ok
          if kind == 'v' then
            ok = (redis.call('HGET', versions, id) or '0') == version
          else
            ok = (redis.call('HEXISTS', records, id) == 1) == (kind == 'e')
          end
          if not ok then return {'conflict', redis.call('GET', clockKey) or '0'} end
        end
        if created > 0 then
          local count = redis.call('HLEN', records) + created - removed
          if count > maxRecords then return {'too_large', tostring(count)} end
        end
        local clock = redis.call('INCR', clockKey)
        local c = string.format('%d', clock)
        local puts, putVersions, dels = {}, {}, {}
        for _ = 1, tonumber(ARGV[i]) do
          local id, kind = ARGV[i + 1], ARGV[i + 2]
          if kind == 'p' then
            puts[#puts + 1] = id; puts[#puts + 1] = ARGV[i + 3]
            putVersions[#putVersions + 1] = id; putVersions[#putVersions + 1] = c
            redis.call('ZREM', tombs, id)
          else
            dels[#dels + 1] = id
            redis.call('ZADD', tombs, clock, id)
          end
          i = i + 3
        end
        if #puts > 0 then
          redis.call('HSET', records, unpack(puts))
          redis.call('HSET', versions, unpack(putVersions))
        end
        if #dels > 0 then
          redis.call('HDEL', records, unpack(dels))
          redis.call('HDEL', versions, unpack(dels))
        end
        local t = redis.call('TIME')
        local at = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
        redis.call('XADD', log, 'MAXLEN', retention, c .. '-0', 'ops', ops, 'by', sid, 'node', node, 'id', pushId, 'at', at)
        local remembered, kept = c .. '\\t' .. pushId, 1
        if recent then
          for line in string.gmatch(recent, '[^\\n]+') do
            if kept >= 64 then break end
            remembered = remembered .. '\\n' .. line
            kept = kept + 1
          end
        end
        redis.call('HSET', pushes, sid, remembered)
        redis.call('ZADD', pushers, clock, sid)
        local floor = clock - retention
        if floor > 0 then
          redis.call('ZREMRANGEBYSCORE', tombs, '-inf', floor)
          local idle = redis.call('ZRANGEBYSCORE', pushers, '-inf', floor, 'LIMIT', 0, 100)
          if #idle > 0 then
            redis.call('HDEL', pushes, unpack(idle))
            redis.call('ZREM', pushers, unpack(idle))
          end
        end
        -- --doc-ttl: the doc lives docTTLMs (last ARGV) past this commit; all keys get one deadline.
        refreshTTL(tonumber(ARGV[#ARGV]), tonumber(at))
        redis.call('PUBLISH', channel,
          '{"k":"c","clock":' .. c .. ',"ops":' .. ops .. ',"by":"' .. sid .. '","node":"' .. node ..
          '","id":' .. pushId .. ',"at":' .. at .. '}')
        return {'ok', c, at}
        """)

    /// KEYS: keys(doc). ARGV: docTTLMs. Returns {head, records (flat id/json), versions (flat id/clock),
    /// tombstones (flat id/clock), first retained log clock or ''}: a consistent snapshot of the doc.
    /// Refreshes the doc's TTL when due (the node now holds the doc open).
    static let load = RedisScript(
        refreshTTL + """
        refreshTTL(tonumber(ARGV[1]))
        local head = redis.call('GET', KEYS[1]) or '0'
        local first = redis.call('XRANGE', KEYS[5], '-', '+', 'COUNT', 1)
        local firstClock = ''
        if #first > 0 then firstClock = string.match(first[1][1], '^(%d+)') end
        return {head, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]),
                redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'), firstClock}
        """)

    /// KEYS: keys(doc). ARGV: docTTLMs. Returns the head clock ('0' for a doc without commits), and
    /// refreshes the doc's TTL when due: nodes run this periodically for every doc they hold open.
    static let head = RedisScript(
        refreshTTL + """
        refreshTTL(tonumber(ARGV[1]))
        return redis.call('GET', KEYS[1]) or '0'
        """)
}
